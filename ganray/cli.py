"""The `ganray` command line: one subcommand per pipeline stage, all sharing the config loader."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from ganray.config import Config, load_config
from ganray.errors import GanrayError
from ganray.log import setup_logging

log = logging.getLogger("ganray")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.yaml", help="YAML config (sections: data, model, loss, train, storage, ray)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.steps=500 (repeatable; values parse as YAML)",
    )


def cmd_train(cfg: Config, args: argparse.Namespace) -> int:
    from ganray.training.ray_train import train_with_ray

    out = train_with_ray(cfg)
    print(f"run directory:   {out.run_dir}")
    print(f"checkpoint:      {out.checkpoint}")
    print(f"sample grids:    {out.run_dir / 'samples'}")
    print(f"metrics:         {out.run_dir / 'metrics.jsonl'}")
    return 0


def cmd_demo(cfg: Config, args: argparse.Namespace) -> int:
    from ganray.pipeline import run_demo

    summary = run_demo(cfg)
    print(summary)
    return 0


COMMANDS: dict[str, tuple[Callable[[Config, argparse.Namespace], int], str, dict]] = {
    "train": (cmd_train, "train a GAN with Ray Train (resumes a run dir that holds one)", {}),
    "demo": (
        cmd_demo,
        "the README's main job: train the conditional DCGAN on the embedded digits and show the results",
        {"storage.run_name": "demo"},
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganray", description="Synthesize labelled training datasets with GANs on Ray.")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_config_args(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    fn, _, defaults = COMMANDS[args.command]
    try:
        implied = [f"{k}={v}" for k, v in defaults.items()]
        cfg = load_config(args.config, [*implied, *args.overrides])
        return fn(cfg, args)
    except GanrayError as e:
        print(f"ganray {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ganray {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
