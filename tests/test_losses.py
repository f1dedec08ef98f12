import math

import pytest
import torch

from ganray.training.diffaugment import cutout, diff_augment, translation
from ganray.training.losses import hinge_d, hinge_g, minimax_d, minimax_g


def test_minimax_on_known_logits():
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -2.0])
    # D: -log sigmoid(real) - log(1 - sigmoid(fake))
    expected = (math.log(2) + math.log(1 + math.exp(-2))) / 2 * 2
    assert minimax_d(real, fake).item() == pytest.approx(expected, rel=1e-6)
    # G (non-saturating): -log sigmoid(fake)
    assert minimax_g(fake).item() == pytest.approx((math.log(2) + math.log(1 + math.exp(2))) / 2, rel=1e-6)
    # Matches binary cross-entropy on logits, as the Keras tutorial computes it.
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert minimax_d(real, fake).item() == pytest.approx(
        (bce(real, torch.ones(2)) + bce(fake, torch.zeros(2))).item(), rel=1e-6
    )


def test_hinge_on_known_logits():
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-0.5, -3.0])
    assert hinge_d(real, fake).item() == pytest.approx((0.5 + 0.0) / 2 + (0.5 + 0.0) / 2)
    assert hinge_g(fake).item() == pytest.approx(1.75)


def test_diffaugment_empty_policy_is_identity():
    x = torch.randn(4, 1, 8, 8)
    assert diff_augment(x, "") is x


def test_translation_moves_content_and_fills_zeros():
    torch.manual_seed(0)
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(64, 1, 1, 1) + 1  # no zeros in the input
    out = translation(x, ratio=0.125)
    assert out.shape == x.shape
    moved = (out != x).flatten(1).any(1)
    assert moved.float().mean() > 0.5
    # Every output pixel is either a zero fill or a pixel of the input.
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0.0}


def test_cutout_zeroes_a_square():
    torch.manual_seed(0)
    out = cutout(torch.ones(256, 1, 16, 16), ratio=0.5)
    zeros = (out == 0).flatten(1).sum(1)
    assert zeros.max() == 64  # an 8x8 square fully inside
    assert zeros.float().mean() > 20


def test_diffaugment_is_differentiable_and_reproducible():
    x = torch.randn(8, 3, 16, 16, requires_grad=True)
    torch.manual_seed(1)
    a = diff_augment(x, "color,translation,cutout")
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    torch.manual_seed(1)
    assert torch.equal(a, diff_augment(x, "color,translation,cutout"))
