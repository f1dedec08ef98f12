"""The article's model must match the Keras DCGAN exactly; the others must have the right shapes."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ganray.config import ModelConfig
from ganray.errors import GanrayError
from ganray.models import ARCHS, build_models
from ganray.models.layers import SameConv2d, SameConvTranspose2d

# The article's model as configs/article.yaml selects it.
ARTICLE = ModelConfig(arch="dcgan", width=1.0, spectral_norm=False, d_dropout=0.3)


def trainable(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def non_trainable(m: nn.Module) -> int:
    return sum(b.numel() for n, b in m.named_buffers() if not n.endswith("num_batches_tracked"))


def layer_table(model: nn.Module, x: torch.Tensor, *extra) -> list[tuple[str, tuple, int]]:
    """(layer type, output shape without batch, trainable params) per leaf layer, like model.summary()."""
    rows = []
    hooks = [
        m.register_forward_hook(lambda mod, i, o: rows.append((type(mod).__name__, tuple(o.shape[1:]), trainable(mod))))
        for m in model.modules()
        if not list(m.children())
    ]
    model(x, *extra)
    for h in hooks:
        h.remove()
    return rows


def test_article_generator_matches_keras_summary():
    G, _ = build_models(ARTICLE, (1, 28, 28), 0)
    rows = layer_table(G.eval(), torch.randn(2, 100))
    assert rows == [
        ("Linear", (12544,), 1_254_400),
        ("BatchNorm1d", (12544,), 25_088),
        ("LeakyReLU", (12544,), 0),
        ("SameConvTranspose2d", (128, 7, 7), 819_200),
        ("BatchNorm2d", (128, 7, 7), 256),
        ("LeakyReLU", (128, 7, 7), 0),
        ("SameConvTranspose2d", (64, 14, 14), 204_800),
        ("BatchNorm2d", (64, 14, 14), 128),
        ("LeakyReLU", (64, 14, 14), 0),
        ("SameConvTranspose2d", (1, 28, 28), 1_600),
        ("Tanh", (1, 28, 28), 0),
    ]
    # Keras: Total params 2,330,944; trainable 2,305,472; non-trainable 25,472.
    assert trainable(G) == 2_305_472
    assert non_trainable(G) == 25_472


def test_article_discriminator_matches_keras_summary():
    _, D = build_models(ARTICLE, (1, 28, 28), 0)
    rows = layer_table(D.eval(), torch.randn(2, 1, 28, 28))
    assert rows == [
        ("SameConv2d", (64, 14, 14), 1_664),
        ("LeakyReLU", (64, 14, 14), 0),
        ("Dropout", (64, 14, 14), 0),
        ("SameConv2d", (128, 7, 7), 204_928),
        ("LeakyReLU", (128, 7, 7), 0),
        ("Dropout", (128, 7, 7), 0),
        ("Flatten", (6272,), 0),
        ("Linear", (1,), 6_273),
    ]
    assert trainable(D) == 212_865


def test_article_model_uses_keras_defaults():
    G, D = build_models(ARTICLE, (1, 28, 28), 0)
    slopes = {m.negative_slope for m in [*G.modules(), *D.modules()] if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.3}
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert {(m.momentum, m.eps) for m in bns} == {(0.01, 1e-3)}
    drops = {m.p for m in D.modules() if isinstance(m, nn.Dropout)}
    assert drops == {0.3}
    # Glorot-uniform: every kernel within sqrt(6 / (fan_in + fan_out)), biases zero.
    dense = G.project[0].weight
    bound = (6 / (100 + 12544)) ** 0.5
    assert dense.abs().max() <= bound and dense.abs().max() > 0.9 * bound
    assert torch.count_nonzero(D.features[0].bias) == 0


def test_same_padding_is_tensorflow_asymmetric():
    # TF pads (1, 2) for 28 -> 14 with a 5x5 kernel: the extra row/column at bottom/right.
    conv = SameConv2d(1, 1, 5, stride=2, bias=False)
    x = torch.randn(1, 1, 28, 28)
    expected = F.conv2d(F.pad(x, (1, 2, 1, 2)), conv.weight, stride=2)
    assert torch.allclose(conv(x), expected)
    # The transposed layer is the adjoint of that conv: <conv(x), y> == <x, convT(y)>.
    convt = SameConvTranspose2d(1, 1, 5, stride=2, bias=False)
    convt.weight.data.copy_(conv.weight.data)
    y = torch.randn(1, 1, 14, 14)
    assert torch.allclose((conv(x) * y).sum(), (x * convt(y)).sum(), atol=1e-4)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
@pytest.mark.parametrize("width", [0.5, 1.0])
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_shapes_for_every_arch(arch, width, shape):
    G, D = build_models(ModelConfig(arch=arch, width=width), shape, 10)
    y = torch.tensor([0, 3, 9])
    x = G(torch.randn(3, 100), y)
    assert x.shape == (3, *shape)
    assert x.abs().max() <= 1.0
    assert D(x, y).shape == (3,)


def test_width_scales_channels():
    small, _ = build_models(ModelConfig(arch="cdcgan", width=0.5), (1, 28, 28), 10)
    assert trainable(build_models(ARTICLE.model_copy(update={"spectral_norm": True}), (1, 28, 28), 0)[1]) == 212_865
    big, _ = build_models(ModelConfig(arch="cdcgan", width=2.0), (1, 28, 28), 10)
    assert small.up1.out_channels == 64 and big.up1.out_channels == 256
    assert trainable(big) > 3 * trainable(small)


def test_conditional_generator_uses_labels():
    G, D = build_models(ModelConfig(arch="cdcgan"), (1, 28, 28), 10)
    G.eval()
    z = torch.randn(1, 100).repeat(10, 1)
    x = G(z, torch.arange(10))
    assert (x[0] - x[1]).abs().mean() > 1e-3  # same noise, different class, different image
    assert D(x, torch.arange(10)).shape == (10,)
    with pytest.raises(ValueError):
        G(z, None)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_spectral_norm_option_bounds_d_layers(arch):
    _, D = build_models(ModelConfig(arch=arch, spectral_norm=True), (1, 28, 28), 10)
    D.eval()
    w = D.features[0].weight.reshape(D.features[0].weight.shape[0], -1)
    for _ in range(3):
        D(torch.randn(2, 1, 28, 28), torch.tensor([0, 1]))
    assert torch.linalg.matrix_norm(w, ord=2) < 1.5


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(GanrayError, match="unknown model.arch 'nope'"):
        build_models(ModelConfig(arch="nope"), (1, 28, 28), 10)


def test_classifier_head_reads_classes_and_needs_a_conditional_model():
    _, D = build_models(ModelConfig(arch="cdcgan", width=0.25), (1, 28, 28), 10, classifier_head=True)
    D.eval()  # spectral norm's power iteration would move the weights between calls
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 9])
    logit, classes = D(x, y, classes=True)
    assert logit.shape == (4,) and classes.shape == (4, 10)
    assert torch.equal(D(x, y), logit)  # the head adds an output, not a change to the logit
    _, plain = build_models(ModelConfig(arch="cdcgan", width=0.25), (1, 28, 28), 10)
    assert plain.classify is None  # off by default: checkpoints of existing runs keep their keys
    with pytest.raises(ValueError, match="no classifier head"):
        plain(x, y, classes=True)
    with pytest.raises(GanrayError, match="loss.class_weight needs a class-conditional model"):
        build_models(ModelConfig(arch="dcgan"), (1, 28, 28), 10, classifier_head=True)
