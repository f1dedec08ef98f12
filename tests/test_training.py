"""The plain PyTorch loop, without Ray: learning, exact resume, checkpoint safety, divergence."""

from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import tiny_config
from ganray.errors import GanrayError
from ganray.runs.checkpoint import load_checkpoint, save_checkpoint
from ganray.training.local import train_local
from ganray.training.loop import batch_indices
from ganray.runs.run_dir import RunDir, checkpoint_names, load_latest, read_metrics
from ganray.models.sampling import generate, recalibrate_batchnorm


def test_batches_are_disjoint_slices_of_one_global_batch():
    n, B = 100, 32
    whole = batch_indices(n, B, step=7, seed=3, rank=0, world=1)
    parts = [batch_indices(n, B, step=7, seed=3, rank=r, world=4) for r in range(4)]
    assert torch.equal(torch.cat(parts), whole)
    # One epoch (3 steps of 32 from 100) never repeats an image.
    epoch = torch.cat([batch_indices(n, B, s, 3, 0, 1) for s in range(3)])
    assert len(epoch.unique()) == 96
    assert not torch.equal(batch_indices(n, B, 0, 3, 0, 1), batch_indices(n, B, 3, 3, 0, 1))
    # Fewer images than the batch still yields a full batch.
    assert len(batch_indices(10, 32, 0, 0, 0, 1)) == 32


def _flat(sd) -> dict[str, torch.Tensor]:
    out = {}

    def walk(prefix, v):
        if isinstance(v, torch.Tensor):
            out[prefix] = v
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}", x)
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(f"{prefix}.{i}", x)

    walk("", sd)
    return out


def test_resume_continues_exactly(tmp_path):
    straight = train_local(tiny_config(tmp_path / "a", "train.steps=10"), tmp_path / "a" / "run")
    train_local(tiny_config(tmp_path / "b", "train.steps=5"), tmp_path / "b" / "run")
    resumed = train_local(tiny_config(tmp_path / "b", "train.steps=10"), tmp_path / "b" / "run")
    a, b = _flat(straight.state_dict()), _flat(resumed.state_dict())
    assert a.keys() == b.keys() and len(a) > 20
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    assert straight.step == resumed.step == 10
    ma, mb = read_metrics(tmp_path / "a" / "run"), read_metrics(tmp_path / "b" / "run")
    assert [m["step"] for m in mb] == [5, 10]
    assert [round(m["loss_g"], 5) for m in ma] == [round(m["loss_g"], 5) for m in mb]


def _curves(run) -> tuple[dict[str, list[tuple[int, float]]], list[int]]:
    """The run's TensorBoard scalars and sample-grid steps, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = {k: [(e.step, e.value) for e in acc.Scalars(k)] for k in acc.Tags()["scalars"]}
    return scalars, [e.step for e in acc.Images("samples")]


def test_tensorboard_curves_follow_metrics_jsonl_across_a_resume(tmp_path):
    """Every logged scalar and sample grid is in the run's event files; a resume purges the stale tail."""
    run = tmp_path / "run"
    train_local(tiny_config(tmp_path, "train.steps=10"), run)
    # As if the process died after logging step 10 but before its checkpoint: resume from 5 with another lr.
    import shutil

    shutil.rmtree(run / "checkpoints" / "step_0000010")
    train_local(tiny_config(tmp_path, "train.steps=10", "train.lr_g=1e-3"), run)
    metrics = read_metrics(run)
    scalars, grids = _curves(run)
    assert {"loss_d", "loss_g", "d_real", "d_fake", "img_per_s"} <= scalars.keys()
    for key in ("loss_d", "loss_g"):
        assert [(s, round(v, 4)) for s, v in scalars[key]] == [(m["step"], round(m[key], 4)) for m in metrics]
    assert grids == [5, 10]


def test_run_dir_layout(tmp_path):
    run = tmp_path / "run"
    train_local(tiny_config(tmp_path), run)
    assert (run / "config.yaml").is_file()
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000005.png", "step_0000010.png"]
    assert checkpoint_names(run) == ["step_0000010", "step_0000005"]
    state, meta = load_checkpoint(run / "checkpoints" / "step_0000010")
    assert state["step"] == 10 and meta["class_names"] == [str(i) for i in range(10)]
    assert set(state) == {"step", "G", "D", "G_ema", "opt_g", "opt_d"}
    m = read_metrics(run)[-1]
    assert {"loss_d", "loss_g", "d_real", "d_fake", "img_per_s"} <= m.keys() and m["img_per_s"] > 0


def test_training_learns_class_structure(tmp_path, digits):
    """After a short run, per-class mean images of samples move most of the way to the real ones."""
    cfg = tiny_config(tmp_path, "model.width=0.5", "train.batch_size=64", "train.steps=150",
                      "train.checkpoint_every=150", "train.sample_every=150", "train.log_every=50")
    real = digits.train
    real_means = torch.stack([real.images[real.labels == c].float().mean(0) for c in range(10)])

    def class_mean_error(G) -> float:
        recalibrate_batchnorm(G)
        y = torch.arange(10).repeat_interleave(50)
        x = generate(G, torch.randn(len(y), G.z_dim, generator=torch.Generator().manual_seed(0)), y).float()
        means = torch.stack([x[y == c].mean(0) for c in range(10)])
        return float((means - real_means).abs().mean())

    from ganray.models import build_generator
    torch.manual_seed(0)
    before = class_mean_error(build_generator(cfg.model, (1, 28, 28), 10))
    state = train_local(cfg, tmp_path / "run")
    after = class_mean_error(state.sampler())
    assert after < 0.4 * before, (before, after)
    # And the classes differ from each other the way real digits do: mean images are closest to their own class.
    assert after < 25


def test_corrupt_latest_checkpoint_falls_back(tmp_path, caplog):
    run = tmp_path / "run"
    train_local(tiny_config(tmp_path), run)
    latest = run / "checkpoints" / "step_0000010" / "state.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated by a crash
    with pytest.raises(GanrayError, match="fails its checksum"):
        load_checkpoint(latest.parent)
    state, meta, where = load_latest(RunDir.at(run))
    assert where == str(run / "checkpoints" / "step_0000005") and state["step"] == 5
    assert "skipping checkpoint" in caplog.text
    resumed = train_local(tiny_config(tmp_path, "train.steps=10"), run)  # redoes steps 6..10
    assert resumed.step == 10


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_pickle_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    _Payload.marker = marker
    d = tmp_path / "ckpt"
    save_checkpoint(d, {"step": 1, "G": {}}, {})
    with open(d / "state.pt", "wb") as f:
        torch.save({"step": 1, "evil": _Payload()}, f)
    meta = json.loads((d / "meta.json").read_text())
    import hashlib

    meta["sha256"] = hashlib.sha256((d / "state.pt").read_bytes()).hexdigest()
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(GanrayError, match="cannot be loaded safely"):
        load_checkpoint(d)
    assert not marker.exists()


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    train_local(tiny_config(tmp_path, "train.steps=5"), run)
    good = (run / "checkpoints" / "step_0000005" / "state.pt").read_bytes()
    with pytest.raises(GanrayError, match="non-finite .* at step 10"):
        train_local(tiny_config(tmp_path, "train.steps=10", "train.lr_d=1e38", "train.lr_g=1e38"), run)
    assert checkpoint_names(run) == ["step_0000005"]
    assert (run / "checkpoints" / "step_0000005" / "state.pt").read_bytes() == good


def test_resume_refuses_a_different_model(tmp_path):
    run = tmp_path / "run"
    train_local(tiny_config(tmp_path, "train.steps=5"), run)
    with pytest.raises(GanrayError, match="different model config"):
        train_local(tiny_config(tmp_path, "model.width=0.5"), run)


def test_mode_seeking_adds_the_inverse_of_its_ratio_to_g_loss(tmp_path):
    """loss.mode_seeking: G's loss gains weight / (image distance / noise distance) of the paired halves."""
    from ganray.training.loop import gan_step
    from ganray.training.state import build_state

    y = torch.arange(8) % 4  # halves already share labels, so both runs see the same batch
    real, z = torch.rand(8, 1, 28, 28) * 2 - 1, torch.randn(8, 100)
    out = {}
    for weight in (0.0, 2.0):
        cfg = tiny_config(tmp_path, f"loss.mode_seeking={weight}", "loss.mode_seeking_warmup=0")
        state = build_state(cfg, (1, 28, 28), 10, torch.device("cpu"))
        torch.manual_seed(0)
        out[weight] = gan_step(cfg, state, state.G, state.D, real, y, z, amp=False)
    ratio = out[2.0]["ms_ratio"]
    assert 0 < ratio < 10 and "ms_ratio" not in out[0.0]
    assert torch.allclose(out[2.0]["loss_d"], out[0.0]["loss_d"])
    assert torch.allclose(out[2.0]["loss_g"] - out[0.0]["loss_g"], 2.0 / (ratio + 1e-5), rtol=1e-4)
    # A one-image batch (a rank's share of a tiny batch) has no pair: no term, not a NaN.
    one = gan_step(cfg, state, state.G, state.D, real[:1], y[:1], z[:1], amp=False)
    assert "ms_ratio" not in one and torch.isfinite(one["loss_g"])


def test_mode_seeking_warmup_ramps_the_weight_linearly_from_zero(tmp_path):
    """loss.mode_seeking_warmup: no term at step 0, half the weight halfway, the full weight after."""
    from ganray.training.loop import gan_step, mode_seeking_weight
    from ganray.training.state import build_state

    loss = tiny_config(tmp_path, "loss.mode_seeking=2.0", "loss.mode_seeking_warmup=100").loss
    assert [mode_seeking_weight(loss, s) for s in (0, 25, 50, 100, 5000)] == [0.0, 0.5, 1.0, 2.0, 2.0]
    assert mode_seeking_weight(loss.model_copy(update={"mode_seeking_warmup": 0}), 0) == 2.0
    cfg = tiny_config(tmp_path, "loss.mode_seeking=2.0", "loss.mode_seeking_warmup=100")
    y, real, z = torch.arange(8) % 4, torch.rand(8, 1, 28, 28) * 2 - 1, torch.randn(8, 100)
    out = {}
    for step in (0, 50):
        state = build_state(cfg, (1, 28, 28), 10, torch.device("cpu"))
        state.step = step
        torch.manual_seed(0)
        out[step] = gan_step(cfg, state, state.G, state.D, real, y, z, amp=False)
    assert "ms_ratio" not in out[0]
    assert torch.allclose(out[50]["loss_g"] - out[0]["loss_g"], 1.0 / (out[50]["ms_ratio"] + 1e-5), rtol=1e-4)


def test_a_compiled_step_gives_the_eager_steps_losses(tmp_path, digits):
    """train.compile: the same G and D under torch.compile give the same losses, step by step."""
    from ganray.training.loop import NullHooks, train_gan

    class Lines(NullHooks):
        def __init__(self) -> None:
            self.lines: list[dict] = []

        def log(self, step: int, metrics: dict) -> None:
            self.lines.append(metrics)

    losses = {}
    for mode in ("none", "default"):
        hooks = Lines()
        train_gan(tiny_config(tmp_path, "train.steps=3", "train.log_every=1", f"train.compile={mode}"), digits.train, hooks)
        losses[mode] = torch.tensor([[m["loss_d"], m["loss_g"]] for m in hooks.lines])
    assert losses["none"].shape == (3, 2)
    assert torch.allclose(losses["default"], losses["none"], atol=1e-4, rtol=1e-4), losses
