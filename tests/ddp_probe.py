"""A training run under a distributed launcher, with probes: run as a script (``accelerate launch ...
tests/ddp_probe.py --config ...``) by tests/test_training_ddp.py. ``SKILLMIX_PROBE_DIR`` names a folder
where each rank writes ``rank<R>.json``:

* ``batches``: per micro-batch, the samples this rank trained on (a hash of each row's tokens);
* ``writes``: every file under the output folder this process opened for writing or saved through torch,
  safetensors or the Trainer (so the test sees which rank wrote what; rank 0's list proves the probe sees);
* ``first_step``: the global step at which this launch's first training step began (a resume's start);
* ``last_step``: the global step when the Trainer ended (where a launch stopped);
* ``ddp_alive_at_end``: whether a ``DistributedDataParallel`` model was still alive when the Trainer
  destroyed the process group (it must not be: its later destruction can hang the process at exit).

``SKILLMIX_PROBE_SLOW`` (seconds) sleeps after every step past the first checkpoint, so that the test can
kill the launch while it trains. ``SKILLMIX_PROBE_ENDING=1`` makes a GRPO student end its answers
(:func:`ending_generation`).
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path

RANK = int(os.environ.get("RANK", "0"))
PROBE = Path(os.environ.get("SKILLMIX_PROBE_DIR", "."))
EOS_BIAS = 6.0  # about 28% a token for the end of sequence over a tiny random student's 1,024 tokens
record: dict = {"rank": RANK, "batches": [], "writes": [], "first_step": None}


def dump() -> None:
    (PROBE / f"rank{RANK}.json").write_text(json.dumps(record))


def output_dir() -> Path:
    return Path(sys.argv[sys.argv.index("--output-dir") + 1]).resolve()


def note(path) -> None:
    try:
        resolved = Path(os.fspath(path)).resolve()
    except TypeError:
        return
    out = output_dir()
    if resolved == out or out in resolved.parents:
        record["writes"].append(str(resolved.relative_to(out)))


def wrap_open(original):
    def opened(file, mode="r", *args, **kwargs):
        if any(flag in str(mode) for flag in "wax+"):
            note(file)
        return original(file, mode, *args, **kwargs)

    return opened


def wrap_save(original, where: int = 1):
    def saved(*args, **kwargs):
        if len(args) > where:
            note(args[where])
        for key in ("f", "filename", "path"):
            if key in kwargs:
                note(kwargs[key])
        return original(*args, **kwargs)

    return saved


def ending_generation(tokenizer) -> dict:
    """TRL ``generation_kwargs`` under which a tiny random student ends its answer after a few tokens (at
    least one): its completions are then graded, not cut at ``max_completion_length`` (which earns 0 and is
    never sent), as a real student's mostly are."""
    return {"min_new_tokens": 1, "sequence_bias": {(tokenizer.eos_token_id,): EOS_BIAS}}


def sample_hash(tokens) -> str:
    return hashlib.sha256(json.dumps(list(tokens)).encode()).hexdigest()[:16]


def install() -> None:
    import safetensors.torch
    import torch
    import transformers.modeling_utils as modeling_utils
    from transformers import TrainerCallback
    from trl import GRPOTrainer, SFTTrainer

    builtins.open = io.open = wrap_open(builtins.open)
    torch.save = torch.serialization.save = wrap_save(torch.save)
    safetensors.torch.save_file = wrap_save(safetensors.torch.save_file)
    if hasattr(modeling_utils, "safe_save_file"):
        modeling_utils.safe_save_file = wrap_save(modeling_utils.safe_save_file)

    class Probe(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if record["first_step"] is None:
                record["first_step"] = state.global_step
                dump()

        def on_step_end(self, args, state, control, **kwargs):
            slow = float(os.environ.get("SKILLMIX_PROBE_SLOW") or 0)
            if slow and args.save_steps and state.global_step > args.save_steps:
                time.sleep(slow)

    for trainer_class in (SFTTrainer, GRPOTrainer):
        wrap_trainer(trainer_class, Probe)


def wrap_trainer(trainer_class, probe) -> None:
    """The probe's callback, micro-batches and end in ``trainer_class`` (SFT's rows, GRPO's prompts)."""
    from trl import GRPOTrainer

    original_init = trainer_class.__init__

    def init(self, *args, **kwargs):
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), probe()]
        if trainer_class is GRPOTrainer and os.environ.get("SKILLMIX_PROBE_ENDING") == "1":
            kwargs["args"].generation_kwargs = ending_generation(kwargs["processing_class"])
        original_init(self, *args, **kwargs)
        collate = self.data_collator

        def recorded(features):  # one micro-batch of this rank, as the dataloader assembles it
            record["batches"].append([sample_hash(f.get("input_ids") or f["prompt"]) for f in features])
            dump()
            return collate(features)

        self.data_collator = recorded

    trainer_class.__init__ = init
    original_end = trainer_class.end

    def end(self):  # the process group is destroyed here: no DDP model may outlive it (training/run.py)
        import gc

        from torch.nn.parallel import DistributedDataParallel

        record["ddp_alive_at_end"] = any(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
        record["last_step"] = self.state.global_step
        dump()
        original_end(self)

    trainer_class.end = end


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != here]
    install()
    from skillmix.training.cli import main

    code = main(sys.argv[1:])
    dump()
    sys.exit(code)
