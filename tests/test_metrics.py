"""Evaluation: torch-fidelity metrics with the domain and Inception extractors, caching, bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn as nn

from conftest import CACHE_DIR, tiny_config
from ganray.data.base import to_unit
from ganray.errors import GanrayError
from ganray.metrics.domain import domain_classifier
from ganray.metrics.evaluator import build_evaluator, check_classes
from ganray.metrics.extractors import inception, register_domain
from ganray.metrics.fidelity import compute_metrics
from ganray.metrics.names import metric_name
from ganray.models import build_generator
from ganray.config import ModelConfig
from ganray.models.sampling import recalibrate_batchnorm, sample_balanced

METRICS = ["fid", "isc", "kid", "prc"]


@pytest.fixture(scope="module")
def domain(digits):
    return domain_classifier(digits.train, CACHE_DIR, steps=150, test=digits.test)


@pytest.fixture(scope="module")
def extractor(domain):
    return register_domain(domain.model, domain.key)


@pytest.fixture(scope="module")
def trained_run(generator_dir):
    """The suite's shared trained run (conftest's generator_dir) and the tiny config it was trained with."""
    run = generator_dir.parent
    return tiny_config(run.parent), run


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Textbook Frechet distance with scipy's matrix square root (independent of torch-fidelity)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_domain_classifier_is_accurate_and_cached(digits, domain):
    assert domain.test_accuracy is not None and domain.test_accuracy > 0.97
    again = domain_classifier(digits.train, CACHE_DIR, steps=150, test=digits.test)
    assert again.key == domain.key
    for a, b in zip(domain.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    # Another dataset gets another classifier (the key follows the data fingerprint).
    other = digits.train.subset(np.arange(0, len(digits.train), 2))
    assert domain_classifier(other, CACHE_DIR, steps=20).key != domain.key


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # dead ReLU units: a singular but valid covariance
def test_fid_matches_an_independent_frechet_distance(digits, domain, extractor):
    fake, real = digits.test.images, digits.train.images
    ours = compute_metrics(fake, real, "xcheck", extractor, ["fid"], CACHE_DIR)["fid_domain"]
    with torch.no_grad():
        fa = domain.model.features(to_unit(fake)).double().numpy()
        fb = domain.model.features(to_unit(real)).double().numpy()
    assert ours == pytest.approx(frechet(fa, fb), rel=1e-3)
    assert ours > 0


def test_fid_orders_real_then_trained_then_untrained_then_noise(digits, extractor, generator_dir):
    from ganray.runs.export import load_generator

    real = digits.train.images

    def fid(images: torch.Tensor, name: str) -> float:
        return compute_metrics(images, real, "order", extractor, METRICS, CACHE_DIR)["fid_domain"]

    trained = load_generator(generator_dir).G
    untrained = build_generator(ModelConfig(width=0.25), (1, 28, 28), 10)
    recalibrate_batchnorm(untrained)
    fid_real = fid(digits.test.images, "real")
    fid_trained = fid(sample_balanced(trained, 1000, 0)[0], "trained")
    fid_untrained = fid(sample_balanced(untrained, 1000, 0)[0], "untrained")
    fid_noise = fid(torch.randint(0, 256, (1000, 1, 28, 28), dtype=torch.uint8), "noise")
    assert fid_real < fid_trained < fid_untrained
    assert fid_real < fid_trained < fid_noise


def test_all_metrics_named_by_extractor_and_in_range(digits, extractor):
    m = compute_metrics(digits.test.images, digits.train.images, "range", extractor, METRICS, CACHE_DIR)
    assert set(m) == {
        "fid_domain", "is_domain", "is_domain_std", "kid_domain", "kid_domain_std",
        "precision_domain", "recall_domain", "f_score_domain",
    }
    # Real test digits look like real train digits to a digits classifier.
    assert 0.7 < m["precision_domain"] <= 1 and 0.7 < m["recall_domain"] <= 1
    assert 7.0 < m["is_domain"] <= 10.0  # 10 balanced, confidently classified classes
    assert metric_name("is_std", "inception") == "is_inception_std"


def knn_precision_recall(fake: np.ndarray, real: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkaanniemi et al.'s k-NN precision/recall, written out independently of torch-fidelity."""
    def radii(x: np.ndarray) -> np.ndarray:
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    cross = np.linalg.norm(fake[:, None] - real[None], axis=-1)
    precision = (cross <= radii(real)[None]).any(1).mean()
    recall = (cross.T <= radii(fake)[None]).any(1).mean()
    return float(precision), float(recall)


def test_precision_recall_run_on_equal_seeded_subsets(digits, domain, extractor):
    fake, real = digits.test.images, digits.train.images  # 360 against 1,437
    m = compute_metrics(fake, real, "prc", extractor, ["prc"], CACHE_DIR, prc_samples=200, seed=3)
    pick_fake = torch.randperm(len(fake), generator=torch.Generator().manual_seed(3))[:200]
    pick_real = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:200]
    with torch.no_grad():
        ff = domain.model.features(to_unit(fake[pick_fake])).double().numpy()
        fr = domain.model.features(to_unit(real[pick_real])).double().numpy()
    precision, recall = knn_precision_recall(ff, fr)
    assert m["precision_domain"] == pytest.approx(precision, abs=0.006)  # one sample in 200 may sit on a radius
    assert m["recall_domain"] == pytest.approx(recall, abs=0.006)
    # Without a cap, both sides shrink to the smaller set (360), so the result differs from the 200-subset one.
    full = compute_metrics(fake, real, "prc", extractor, ["prc"], CACHE_DIR, prc_samples=10_000, seed=3)
    pick_real = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[: len(fake)]
    with torch.no_grad():
        fr = domain.model.features(to_unit(real[pick_real])).double().numpy()
        ff = domain.model.features(to_unit(fake)).double().numpy()
    assert full["recall_domain"] == pytest.approx(knn_precision_recall(ff, fr)[1], abs=0.006)


def test_kid_adapts_to_few_samples_and_too_few_is_an_error(digits, extractor):
    few = digits.test.images[:30]
    m = compute_metrics(few, digits.train.images, "few", extractor, ["kid"], CACHE_DIR, kid_subset_size=1000)
    assert np.isfinite(m["kid_domain"])
    with pytest.raises(GanrayError, match="10 generated samples are too few.*eval.num_samples"):
        compute_metrics(digits.test.images[:10], digits.train.images, "few", extractor, ["fid"], CACHE_DIR)


def test_mismatched_shapes_and_classes_are_errors(digits, extractor):
    rgb = digits.test.images.expand(-1, 3, -1, -1).contiguous()
    with pytest.raises(GanrayError, match="3x28x28.*1x28x28.*data.image_size/data.channels"):
        compute_metrics(rgb, digits.train.images, "shape", extractor, ["fid"], CACHE_DIR)
    G = build_generator(ModelConfig(width=0.25), (1, 28, 28), 7)
    with pytest.raises(GanrayError, match="7 classes but the dataset has 10"):
        check_classes(G, digits.train)


def test_real_features_come_from_the_cache(digits, extractor, tmp_path):
    real = digits.train.images
    first = compute_metrics(digits.test.images, real, "cached", extractor, METRICS, tmp_path)
    files = sorted(p.name for p in (tmp_path / "fidelity").iterdir())
    assert files and all(f.startswith(f"real-cached-{extractor.cache_id}") for f in files)
    # Same cache name, different tensor: identical results prove the real side was not recomputed.
    second = compute_metrics(digits.test.images, torch.zeros_like(real), "cached", extractor, METRICS, tmp_path)
    assert second == first


class _Planted:
    def __reduce__(self):
        return (open, ("/tmp/ganray-planted-pickle-ran", "w"))


def test_a_planted_pickle_in_the_cache_is_discarded_not_run(digits, extractor, tmp_path):
    import os

    marker = "/tmp/ganray-planted-pickle-ran"
    if os.path.exists(marker):
        os.remove(marker)
    cache = tmp_path / "fidelity"
    cache.mkdir()
    name = f"real-planted-{extractor.cache_id}-{extractor.name}-features-features.pt"
    torch.save({"x": _Planted()}, cache / name)
    m = compute_metrics(digits.test.images, digits.train.images, "planted", extractor, ["fid"], tmp_path)
    assert not os.path.exists(marker)
    assert np.isfinite(m["fid_domain"])


def _random_inception_weights(path) -> None:
    """A state dict with torch-fidelity's InceptionV3 layout and random weights (nothing downloaded)."""
    from torch_fidelity import feature_extractor_inceptionv3 as fi

    m = nn.Module()
    m.Conv2d_1a_3x3 = fi.BasicConv2d(3, 32, kernel_size=3, stride=2)
    m.Conv2d_2a_3x3 = fi.BasicConv2d(32, 32, kernel_size=3)
    m.Conv2d_2b_3x3 = fi.BasicConv2d(32, 64, kernel_size=3, padding=1)
    m.Conv2d_3b_1x1 = fi.BasicConv2d(64, 80, kernel_size=1)
    m.Conv2d_4a_3x3 = fi.BasicConv2d(80, 192, kernel_size=3)
    m.Mixed_5b = fi.InceptionA(192, pool_features=32)
    m.Mixed_5c = fi.InceptionA(256, pool_features=64)
    m.Mixed_5d = fi.InceptionA(288, pool_features=64)
    m.Mixed_6a = fi.InceptionB(288)
    m.Mixed_6b = fi.InceptionC(768, channels_7x7=128)
    m.Mixed_6c = fi.InceptionC(768, channels_7x7=160)
    m.Mixed_6d = fi.InceptionC(768, channels_7x7=160)
    m.Mixed_6e = fi.InceptionC(768, channels_7x7=192)
    m.Mixed_7a = fi.InceptionD(768)
    m.Mixed_7b = fi.InceptionE_1(1280)
    m.Mixed_7c = fi.InceptionE_2(2048)
    m.fc = nn.Linear(2048, 1008)
    torch.manual_seed(0)
    torch.save(m.state_dict(), path)


def test_inception_extractor_from_a_local_weights_file(digits, tmp_path):
    weights = tmp_path / "pt_inception.pth"
    _random_inception_weights(weights)
    ex = inception(str(weights))
    assert ex.tag == "inception" and ex.channels == 3
    m = compute_metrics(digits.test.images[:24], digits.train.images[:24], "incep", ex, ["fid", "isc", "kid"], tmp_path, batch_size=24)
    assert set(m) >= {"fid_inception", "is_inception", "kid_inception"}
    assert all(np.isfinite(v) for v in m.values())
    # The real-feature cache is keyed by the weights' hash: torch-fidelity's own key omits the path.
    assert all(ex.cache_id in p.name for p in (tmp_path / "fidelity").iterdir())


def test_inception_weights_must_exist_and_be_tensors_only(tmp_path):
    with pytest.raises(GanrayError, match="does not exist; give a local copy"):
        inception(str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(pickle.dumps({"fc.weight": _Planted()}))
    with pytest.raises(GanrayError, match="not a tensors-only state dict"):
        inception(str(bad))
    other = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(2)}, other)
    with pytest.raises(GanrayError, match="not an InceptionV3"):
        inception(str(other))
    with pytest.raises(GanrayError, match="eval.inception_weights"):
        tiny_config(tmp_path, "eval.extractor=inception")


def test_evaluation_off_logs_no_fid(trained_run):
    from ganray.runs.run_dir import read_metrics

    cfg, run = trained_run
    assert cfg.eval.every == 0
    assert not any("fid_domain" in m for m in read_metrics(run))


def test_evaluation_during_training_writes_fid_lines(tmp_path):
    from ganray.training.local import train_local
    from ganray.runs.run_dir import read_metrics

    cfg = tiny_config(tmp_path, "eval.every=5", "train.log_every=2")
    train_local(cfg, tmp_path / "run")
    lines = read_metrics(tmp_path / "run")
    with_fid = [m["step"] for m in lines if "fid_domain" in m]
    assert with_fid == [5, 10]
    assert all(m["fid_domain"] > 0 and m["eval_seconds"] > 0 for m in lines if "fid_domain" in m)
    assert [m["step"] for m in lines] == [2, 4, 5, 6, 8, 10]


def test_evaluator_samples_class_balanced_and_deterministically(digits, trained_run, domain):
    from ganray.runs.export import load_generator

    cfg, run = trained_run
    G = load_generator(run / "generator").G
    ev = build_evaluator(cfg, digits, domain=domain)
    a, b = ev.evaluate_generator(G), ev.evaluate_generator(G)
    a.pop("eval_seconds"), b.pop("eval_seconds")
    assert a == b
    _, labels = sample_balanced(G, 205, 0)
    assert torch.bincount(labels).tolist() == [21] * 5 + [20] * 5


def test_a_one_class_dataset_warns_that_domain_metrics_mean_little(tmp_path, caplog):
    from ganray.data.base import ImageDataset
    from ganray.metrics.domain import domain_classifier

    one = ImageDataset(torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8), torch.zeros(8, dtype=torch.long), ("only",))
    with caplog.at_level("WARNING", logger="ganray"):
        domain_classifier(one, tmp_path, steps=2)
    assert "the real data has one class" in caplog.text and "eval.extractor=inception" in caplog.text
    caplog.clear()
    two = ImageDataset(one.images, torch.arange(8) % 2, ("a", "b"))
    with caplog.at_level("WARNING", logger="ganray"):
        domain_classifier(two, tmp_path, steps=2)
    assert "one class" not in caplog.text
