"""Supervised fine-tuning (``method: sft``, the default) with TRL's ``SFTTrainer``: the loss on the answers.

    # CPU, seconds: a tiny random model on a dataset made by `make dataset K=1,2,3`
    make train RECIPE=training/recipes/tiny/smoke.yaml DATA=out OUT=out/train/smoke
    skillmix train --config training/recipes/tiny/smoke.yaml --data out

    # one GPU: a small instruct model, padding-free packing
    python -m skillmix.training --config training/recipes/qwen2.5-0.5b-instruct/single-gpu.yaml \\
        --data org/skill-mix@v1.0.0 --push-to-hub org/qwen2.5-0.5b-skill-mix

    # the paper's recipes on 4 GPUs (FSDP, or DeepSpeed ZeRO-3 with training/accelerate/deepspeed_zero3.yaml)
    accelerate launch --config_file training/accelerate/fsdp.yaml training/sft.py \\
        --config training/recipes/mistral-7b-instruct-v0.2/paper.yaml --data org/skill-mix@v1.0.0

:func:`run` is the method, as :mod:`.dpo` and :mod:`.grpo` are theirs: every check
(:func:`skillmix.training.run.prepare`, nothing written), then the training
(:func:`skillmix.training.run.train`: ``SFTTrainer`` on the pre-tokenized rows, save, card, push). The
command line is ``skillmix train`` (:mod:`skillmix.training.cli`, flags and exit codes there).

Run as a script, this module is that command under its older names: ``python -m skillmix.training.sft
--config RECIPE ...`` and ``accelerate launch ... training/sft.py --config RECIPE ...`` run ``python -m
skillmix.training`` with the same arguments, so they train whatever method the recipe names (``method:
dpo`` and ``grpo`` included), not only SFT.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from skillmix.training.config import TrainConfig
    from skillmix.training.run import Log


def run(config: TrainConfig, log: Log = print) -> Path:
    """Check, tokenize and load everything, then train; returns the output folder."""
    # imported here: run as a file, this module imports nothing but the standard library before the path fix
    from skillmix.training.run import prepare, train

    return train(prepare(config, log), log)


if __name__ == "__main__":
    # run as a file (`accelerate launch training/sft.py`): the folder's own modules must not shadow others
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != here]
    import runpy  # the package's __main__ (the train command), run as `python -m skillmix.training` runs it

    runpy.run_module("skillmix.training", run_name="__main__", alter_sys=True)
