"""The `ganray` command line: one subcommand per pipeline stage, all sharing the config loader."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ganray.config import Config, load_config
from ganray.errors import GanrayError
from ganray.log import setup_logging
from ganray.ray_session import disconnect_ray

if TYPE_CHECKING:
    from ganray.storage import Store
    from ganray.runs.run_dir import RunDir

log = logging.getLogger("ganray")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.yaml", help="YAML config (sections: data, model, loss, train, eval, tune, storage, ray)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.steps=500 (repeatable; values parse as YAML)",
    )


def cmd_train(cfg: Config, args: argparse.Namespace) -> int:
    from ganray.training.ray_train import train_with_ray

    out = train_with_ray(cfg)
    print(f"run directory:   {out.run.uri}")
    print(f"checkpoint:      {out.checkpoint}")
    print(f"generator:       {out.generator}")
    print(f"sample grids:    {out.run.join('samples')}")
    print(f"metrics:         {out.run.join('metrics.jsonl')}")
    return 0


def cmd_tune(cfg: Config, args: argparse.Namespace) -> int:
    from ganray.tuning.sweep import run_sweep

    out = run_sweep(cfg)
    if out.results is None:
        disconnect_ray()
        print(
            f"ganray tune: interrupted with {out.finished} of {out.total} trials finished; "
            f"run the same command again to resume the sweep in {out.uri}",
            file=sys.stderr,
        )
        return 130
    r = out.results
    print(r.markdown)
    print(f"best {r.metric}:     {r.best.score:.4g} (trial {r.best.trial}, step {r.best.score_step})")
    print(f"sweep:           {out.uri}")
    print(f"best config:     {out.uri}/{r.best_config.name}")
    print(f"generator:       {out.uri}/{r.generator.name}")
    print(f"results:         {', '.join(p.name for p in r.files.values())}")
    return 0


def _generate_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", metavar="DIR|S3_URI", help="a run directory: the EMA generator of its checkpoint chosen by export.select (default: storage.runs_dir/run_name)")
    src.add_argument(
        "--generator", metavar="DIR|S3_URI", action="append",
        help="an exported generator directory (<run>/generator or a sweep's generator/); repeat it for an ensemble, "
        "whose members take turns within each class",
    )
    _out_args(p)


def _out_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR|s3://BUCKET/PREFIX", help="output location (sets generate.out)")


def _print_output(out) -> None:
    m = out.manifest
    print(f"output:          {out.uri}")
    print(f"shards:          {len(m['shardlist'])} ({len(out.written)} written now, {len(out.kept)} already finished)")
    print(f"samples:         {m['num_samples']}  acceptance rate {m['acceptance_rate']:.3f}")
    print(f"class counts:    {', '.join(f'{k} {v}' for k, v in m['class_counts'].items())}")
    if "recipe" in m:
        r = m["recipe"]
        how = " (searched on validation)" if r["searched_on"] else ""
        taught = f" (teacher {r['teacher']})" if r.get("teacher") else ""
        picked = f", uncertain share {r['uncertain_share']:g}" if r.get("uncertain_share") else ""
        print(f"recipe:          {len(r['generators'])} generator(s), latent_scale {r['latent_scale']}, "
              f"min_confidence {r['min_confidence']}, soft labels {'on' if r['soft_labels'] else 'off'}{taught}{picked}{how}")
    print(f"manifest:        {out.uri.rstrip('/')}/manifest.json")


def cmd_generate(cfg: Config, args: argparse.Namespace) -> int:
    from ganray.generation.jobs import generate, with_out
    from ganray.runs.export import load_generator, load_run_generator

    cfg = with_out(cfg, args.out)
    if args.generator:
        loaded = [load_generator(g, cfg.storage) for g in args.generator]
    else:
        loaded = [load_run_generator(_run_dir(cfg, args))]
    _print_output(generate(cfg, loaded))
    return 0


def cmd_augment(cfg: Config, args: argparse.Namespace) -> int:
    from ganray.generation.jobs import augment, with_out

    _print_output(augment(with_out(cfg, args.out)))
    return 0


def _run_dir(cfg: Config, args: argparse.Namespace) -> "RunDir":
    from ganray.runs.run_dir import RunDir, resolve_run_dir

    if args.run:
        return RunDir.at(args.run, cfg.storage)
    if not cfg.storage.run_name:
        raise GanrayError("no run given; pass --run DIR or set storage.run_name (with storage.runs_dir)")
    return resolve_run_dir(cfg)


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", metavar="DIR|S3_URI", help="a run directory: the EMA generator of its checkpoint chosen by export.select (default: storage.runs_dir/run_name)")
    src.add_argument("--generator", metavar="DIR|S3_URI", help="an exported generator directory (<run>/generator)")
    src.add_argument("--shards", metavar="DIR|S3_URI", help="WebDataset shards (ganray generate's output)")
    p.add_argument("--out", metavar="FILE.json|S3_URI", help="also write the results here (a run's go to <run>/evaluation.json)")


def cmd_evaluate(cfg: Config, args: argparse.Namespace) -> int:
    from ganray.data import load_splits
    from ganray.fileio import check_cache_dir
    from ganray.metrics.evaluator import evaluate_source
    from ganray.metrics.extractors import inception
    from ganray.runs.export import load_generator, load_run_generator

    if cfg.eval.extractor == "inception":
        inception(cfg.eval.inception_weights or "")  # a bad weights file fails before any work
    check_cache_dir(cfg.storage.cache_dir)
    out: str | None = args.out
    target = _output_file(out, cfg) if out is not None else None
    if args.shards:
        from ganray.data.wds import load_shards

        shards = load_shards(args.shards, cfg.data.channels, cfg.storage)
        result = evaluate_source(cfg, load_splits(cfg.data, cfg.storage), f"shards:{args.shards}", images=shards)
        result["generator_step"] = None
    else:
        if args.generator:
            loaded, source = load_generator(args.generator, cfg.storage), f"generator:{args.generator}"
        else:
            run = _run_dir(cfg, args)
            loaded, source = load_run_generator(run), f"run:{run.uri}"
            if out is None:
                out = run.join("evaluation.json")
                target = _output_file(out, cfg)
        shape = tuple(loaded.info["image_shape"])
        if (cfg.data.channels, cfg.data.image_size, cfg.data.image_size) != shape:
            raise GanrayError(
                f"the generator makes {'x'.join(map(str, shape))} images but data is configured for "
                f"{cfg.data.channels}x{cfg.data.image_size}x{cfg.data.image_size}; set data.channels/data.image_size to match"
            )
        result = evaluate_source(cfg, load_splits(cfg.data, cfg.storage), source, G=loaded.G)
        result["generator_step"] = loaded.info.get("step")
    width = max(len(k) for k in result["metrics"])
    step = f" (step {result['generator_step']})" if result["generator_step"] is not None else ""
    print(f"{result['source']}{step}, {result['num_samples']} samples vs real {result['real_split']}:")
    for k, v in sorted(result["metrics"].items()):
        print(f"  {k:<{width}}  {v:.6g}")
    if target is not None:  # after printing: the metrics are on screen even if the write fails
        store, name = target
        try:
            store.write_bytes(name, json.dumps(result, indent=2, sort_keys=True).encode())
        except OSError as e:
            raise GanrayError(f"cannot write {out} ({e.strerror or type(e).__name__}); the metrics are printed above") from None
        print(f"written to {out}")
    return 0


def _output_file(out: str, cfg: Config) -> "tuple[Store, str]":
    """The store and key of an output file, checked writable before any work."""
    from ganray.storage import is_s3, open_store

    parent, _, name = out.rstrip("/").rpartition("/")
    if not is_s3(out) and Path(out).expanduser().is_dir() or not name:
        raise GanrayError(f"--out {out!r} is a directory; give a file path such as {out.rstrip('/')}/evaluation.json")
    store = open_store(parent or ".", cfg.storage)
    store.check_writable()
    return store, name


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", metavar="DIR|S3_URI", help="the run to report on (default: storage.runs_dir/run_name)")
    p.add_argument("--out", metavar="DIR|S3_URI", help="report directory (default: <run>/report)")


def cmd_report(cfg: Config, args: argparse.Namespace) -> int:
    from ganray.reporting.report import build_report

    out = build_report(cfg, _run_dir(cfg, args), args.out)
    print(out.markdown)
    print(f"report written to {out.uri}")
    return 0


def cmd_demo(cfg: Config, args: argparse.Namespace) -> int:
    from ganray.pipeline import run_demo

    summary = run_demo(cfg)
    print(summary)
    return 0


Command = tuple[Callable[[Config, argparse.Namespace], int], str, dict, Callable[[argparse.ArgumentParser], None] | None]
COMMANDS: dict[str, Command] = {
    "train": (cmd_train, "train a GAN with Ray Train (resumes a run dir that holds one)", {}, None),
    "evaluate": (
        cmd_evaluate,
        "IS, FID, KID and precision/recall of a run's or an exported generator through torch-fidelity",
        {},
        _evaluate_args,
    ),
    "tune": (
        cmd_tune,
        "Ray Tune sweep minimizing FID (ASHA/PBT, random/Optuna search); resumes; exports the best generator",
        {},
        None,
    ),
    "generate": (
        cmd_generate,
        "mass-produce labelled synthetic samples into WebDataset shards + manifest (local or S3); resumable",
        {},
        _generate_args,
    ),
    "augment": (
        cmd_augment,
        "classic data expansion: real images plus transformed copies, through the same shard writer",
        {},
        _out_args,
    ),
    "report": (
        cmd_report,
        "utility report: metrics, train-on-synthetic accuracy, low-data gains, figures (report.md/json)",
        {},
        _report_args,
    ),
    "demo": (
        cmd_demo,
        "the README's main job, the whole pipeline: train on the embedded digits, evaluate and report, generate shards, summarize",
        {"storage.run_name": "demo"},
        None,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganray", description="Synthesize labelled training datasets with GANs on Ray.")
    parser.add_argument(
        "--log-level", default=None, type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="DEBUG, INFO (default), WARNING or ERROR",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text, _, extra) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_config_args(p)
        if extra is not None:
            extra(p)
    return parser


def check_names(cfg: Config) -> None:
    """Names the registries own, checked before any command starts work: a typo is one line at once."""
    from ganray.data.registry import source
    from ganray.metrics.names import check_metrics
    from ganray.metrics.recipes import check_recipes, teacher_recipe
    from ganray.models import get_arch

    source(cfg.data.source)
    get_arch(cfg.model.arch)
    check_metrics(cfg.eval.metrics)
    check_recipes(cfg.eval.recipes, cfg.eval.recipe_prior)
    teacher_recipe(cfg.generate.teacher)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    fn, _, defaults, _ = COMMANDS[args.command]
    try:
        implied = [f"{k}={v}" for k, v in defaults.items()]
        cfg = load_config(args.config, [*implied, *args.overrides])
        check_names(cfg)
        return fn(cfg, args)
    except GanrayError as e:
        print(f"ganray {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        disconnect_ray()
        print(f"ganray {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
