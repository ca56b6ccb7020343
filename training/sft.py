"""Full fine-tuning of a student on Skill-Mix data with TRL's ``SFTTrainer``, configured by a recipe.

    # CPU, seconds: a tiny random model on a dataset made by `make dataset K=1,2,3`
    make train RECIPE=training/recipes/tiny/smoke.yaml DATA=out OUT=out/train/smoke
    python -m skillmix.training.sft --config training/recipes/tiny/smoke.yaml --data out

    # one GPU: a small instruct model, padding-free packing
    python -m skillmix.training.sft --config training/recipes/qwen2.5-0.5b-instruct/single-gpu.yaml \\
        --data org/skill-mix@v1.0.0 --push-to-hub org/qwen2.5-0.5b-skill-mix

    # the paper's recipes on 4 GPUs (FSDP, or DeepSpeed ZeRO-3 with training/accelerate/deepspeed_zero3.yaml)
    accelerate launch --config_file training/accelerate/fsdp.yaml training/sft.py \\
        --config training/recipes/mistral-7b-instruct-v0.2/paper.yaml --data org/skill-mix@v1.0.0

Values come from the recipe's defaults, then the recipe, then the flags (``--help`` lists them all:
``--max-steps``, ``--learning-rate``, ``--packing``, ``--output-dir``, ``--push-to-hub org/model``, ...).
Bad input (an unknown key, a missing dataset config or revision, a model that cannot be loaded, a
``max_length`` shorter than a prompt, a leaking row) is one ``skillmix: error: ...`` line and exit code 2,
before any training step and before the output folder is touched. Any other error (CUDA out of memory, an
NCCL error, a bug) is raised with its traceback (exit code 1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The flags of a run (``--config``, ``--data`` and one per setting) on ``parser`` or a new one."""
    from skillmix.training.config import add_train_flags

    parser = parser or argparse.ArgumentParser(
        allow_abbrev=False,
        prog="skillmix train",
        description="Fine-tune a student on Skill-Mix data (TRL SFT).",
    )
    parser.set_defaults(func=cmd_train, flags=add_train_flags(parser))
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print the method, the steps and the judge's requests and worst-case cost per step; run nothing",
    )
    return parser


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``skillmix train``: the same flags as this script, as a subcommand of the ``skillmix`` CLI."""
    sub = subparsers.add_parser(
        "train",
        help="fine-tune a student on Skill-Mix data with TRL (recipes in training/recipes/)",
        description="Each flag overrides the recipe's value; a flag left out keeps it.",
    )
    return build_parser(sub)


def cmd_train(args: argparse.Namespace) -> None:
    """Run the recipe of ``args``; errors are raised (``ConfigError``/``ValueError``) for the caller."""
    from skillmix.config import overrides
    from skillmix.training.config import build_config
    from skillmix.training.run import prepare, train

    config = build_config(args.config, overrides(args, args.flags), args.flags, args.data_location)
    if args.plan:
        from skillmix.training.plan import plan_lines

        print("\n".join(plan_lines(config)))
        return
    log = _log_main_process
    if config.method == "sft":
        train(prepare(config, log), log)
        return
    from importlib import import_module

    import_module(f"skillmix.training.{config.method}").run(config, log)


def _log_main_process(message: str) -> None:
    from skillmix.training.run import main_process

    if main_process():
        print(f"skillmix: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print(
            "skillmix: interrupted; run the same command again to resume from the last checkpoint",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:
        from skillmix.errors import is_bad_input

        if not is_bad_input(exc):  # CUDA out of memory, an NCCL error, a bug: the traceback says what
            raise
        text = str(exc).strip()  # ConfigError, MaskError, LeakageError...: before any training step
        print(f"skillmix: error: {text.splitlines()[0] if text else type(exc).__name__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    # run as a file (`accelerate launch training/sft.py`): the folder's own modules must not shadow others
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != here]
    sys.exit(main())
