"""``skillmix train``: fine-tune a student with TRL: SFT, DPO or GRPO, as the recipe's ``method`` says.

    skillmix train --config RECIPE [--data FOLDER|ORG/NAME@REVISION] [--method sft|dpo|grpo] [--plan]
                   [--max-steps N] [--learning-rate LR] [--output-dir DIR] [--push-to-hub ORG/MODEL] ...
    python -m skillmix.training --config RECIPE ...      # the same command, for launchers that take a module:
    accelerate launch --config_file training/accelerate/fsdp.yaml -m skillmix.training --config RECIPE ...
    python -m skillmix.training.sft ...                  # older spellings of the same command, any method:
    accelerate launch --config_file training/accelerate/fsdp.yaml training/sft.py --config RECIPE ...

Values come from the recipe's defaults, then the recipe (``training/recipes/<model>/<variant>.yaml``, or
``tiny/smoke`` for the packaged ones), then the flags (``--help`` lists them all). Each method is one module
with one ``run(config, log)``, TRL's script layout: :mod:`.sft` (``SFTTrainer``), :mod:`.dpo`
(``DPOTrainer``), :mod:`.grpo` (``GRPOTrainer`` with the judge as the reward); :data:`METHODS` maps the
recipe's ``method`` to it, and a method's module (with torch and TRL) is imported only when it runs.

Bad input (an unknown key, a missing dataset config or revision, a model that cannot be loaded, a
``max_length`` shorter than a prompt, a leaking row) is one ``skillmix: error: ...`` line and exit code 2,
before any training step and before the output folder is touched. Any other error (CUDA out of memory, an
NCCL error, a bug) is raised with its traceback (exit code 1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skillmix.training.config import TrainConfig

DESCRIPTION = (
    "Fine-tune a student with TRL: SFT, DPO or GRPO (the recipe's method). Each flag overrides the recipe's "
    "value; a flag left out keeps it."
)
Log = Callable[[str], None]
Run = Callable[["TrainConfig", Log], Path]


def _sft() -> Run:
    from skillmix.training.sft import run

    return run


def _dpo() -> Run:
    from skillmix.training.dpo import run

    return run


def _grpo() -> Run:
    from skillmix.training.grpo import run

    return run


# The recipe's method -> its module's run (imported on the call, not here)
METHODS: dict[str, Callable[[], Run]] = {"sft": _sft, "dpo": _dpo, "grpo": _grpo}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The flags of a run (``--config``, ``--data``, ``--plan`` and one per setting) on ``parser`` or a new
    one (``python -m skillmix.training``)."""
    from skillmix.training.config import add_train_flags

    parser = parser or argparse.ArgumentParser(
        allow_abbrev=False, prog="skillmix train", description=DESCRIPTION
    )
    parser.set_defaults(func=cmd_train, flags=add_train_flags(parser))
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print the method, the steps, the judge's requests and worst-case cost per step and the memory "
        "of one GPU under the recipe's launcher (refused when it does not fit); run nothing",
    )
    return parser


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``skillmix train``: the same flags as ``python -m skillmix.training``, as a command of ``skillmix``."""
    sub = subparsers.add_parser(
        "train", help="fine-tune a student with TRL: SFT, DPO or GRPO", description=DESCRIPTION
    )
    return build_parser(sub)


def cmd_train(args: argparse.Namespace) -> None:
    """Run the recipe of ``args``; errors are raised (``ConfigError``/``ValueError``) for the caller."""
    from skillmix.config import overrides
    from skillmix.training.config import build_config

    config = build_config(args.config, overrides(args, args.flags), args.flags, args.data_location)
    if args.plan:
        _plan(config)
        return
    _check_fits(config)
    METHODS[config.method]()(config, _log_main_process)


def _plan(config: TrainConfig) -> None:
    """The plan under the recipe's launcher; a recipe that cannot fit its GPUs is refused after it."""
    from skillmix.config import ConfigError
    from skillmix.training.launch import planned_launch
    from skillmix.training.plan import memory_check, plan_lines

    launch = planned_launch(config)
    memory, reason = memory_check(config, launch)
    print("\n".join([*plan_lines(config, launch.processes), *memory]), flush=True)
    if reason:
        raise ConfigError(reason)


def _check_fits(config: TrainConfig) -> None:
    """Before anything is loaded: the GPU-only paths refused without a GPU, and the memory of this launch
    against this machine's GPU (else ``launcher.gpu_memory_gb``; neither: not checked)."""
    from skillmix.config import ConfigError
    from skillmix.training.launch import check_gpu_paths, current_launch, device_memory_gb
    from skillmix.training.plan import memory_check

    check_gpu_paths(config, device_memory_gb() is not None)
    _, reason = memory_check(config, current_launch())
    if reason:
        raise ConfigError(reason)


def _log_main_process(message: str) -> None:
    from skillmix.training.run import main_process

    if main_process():
        print(f"skillmix: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m skillmix.training``: exit code 0, 2 (bad input: one line), 130 (interrupted)."""
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
