"""Training on two CPU processes as one DDP job (``torchrun``, torch.distributed over gloo, as the experiment
runner launches it without a GPU),
probed from inside each rank (tests/ddp_probe.py): the Trainer runs distributed, the effective batch is the
recipe's, the ranks train on disjoint samples, only rank 0 writes the run's files, and a launch killed
after a checkpoint resumes at that checkpoint's step; GRPO's processes stop together at the judge's
spending cap (one checkpoint, exit 0) and resume together with a higher one. FSDP and DeepSpeed ZeRO-3 need
GPUs (accelerate refuses ``--cpu`` with FSDP; DeepSpeed is not installed here): this covers DDP only."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from skillmix.experiment.launch import cpu_launcher

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "training" / "recipes" / "tiny" / "smoke.yaml"
PROBE = ROOT / "tests" / "ddp_probe.py"
STEPS, SAVE, PER_DEVICE, EFFECTIVE = 4, 2, 1, 4  # 1 per rank x 2 accumulation x 2 ranks
ROWS = 16  # every row kept: 4 optimizer steps are exactly one epoch, no sample is padded or repeated


@pytest.fixture(scope="module")
def dataset(build_dataset) -> Path:
    return build_dataset("2", ROWS, 2, 1.0)


def launch(recipe: Path, out: Path, probe: Path, slow: float = 0, extra: list[str] = ()) -> subprocess.Popen:
    probe.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SKILLMIX_PROBE_DIR": str(probe), "SKILLMIX_PROBE_SLOW": str(slow),
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "SKILLMIX_PROBE_ENDING": "1"}  # fmt: skip
    cmd = [*cpu_launcher(2), str(PROBE), "--config", str(recipe), "--output-dir", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True, cwd=ROOT)  # fmt: skip


def ranks(probe: Path) -> list[dict]:
    return [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]


# torchrun of 2 processes, killed after a checkpoint, then resumed: 25 s on a quiet 2-core machine (20.6 s
# call + 4.7 s building the dataset), 38 s on a busy one; `make test-slow` runs it (in CI too)
@pytest.mark.slow
def test_two_cpu_processes_train_as_one_job_and_resume_after_a_kill(dataset, tmp_path):
    data = yaml.safe_load(SMOKE.read_text())
    data["data"]["datasets"] = [{"path": str(dataset), "configs": ["k2"]}]
    data["training"].update(max_steps=STEPS, save_steps=SAVE, per_device_train_batch_size=PER_DEVICE,
                            effective_batch_size=EFFECTIVE, packing=False, logging_steps=1)  # fmt: skip
    recipe, out = tmp_path / "ddp.yaml", tmp_path / "run"
    recipe.write_text(yaml.safe_dump(data))

    first = launch(recipe, out, tmp_path / "probe1", slow=30)  # slow after the first checkpoint: killed
    deadline = time.monotonic() + 300
    while not (out / f"checkpoint-{SAVE}" / "trainer_state.json").is_file():
        assert first.poll() is None, first.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint in 5 minutes"
        time.sleep(0.5)
    time.sleep(1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()

    second = launch(recipe, out, tmp_path / "probe2")
    log, _ = second.communicate(timeout=600)
    assert second.returncode == 0, log[-4000:]
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in log
    assert "resuming from" in log and f"checkpoint-{SAVE}" in log
    assert sum("'loss':" in line for line in log.splitlines()) == STEPS - SAVE  # one line a step, not two

    zero, one = ranks(tmp_path / "probe2")
    assert zero["first_step"] == one["first_step"] == SAVE  # resumed at the checkpoint's step
    assert zero["ddp_alive_at_end"] is one["ddp_alive_at_end"] is False  # no hang at exit (run.py: _end)
    state = json.loads((out / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    # the effective batch: per device x accumulation x world size samples per optimizer step
    micro = (STEPS - SAVE) * EFFECTIVE // (2 * PER_DEVICE)
    assert len(zero["batches"]) == len(one["batches"]) == micro
    assert all(len(batch) == PER_DEVICE for batch in zero["batches"] + one["batches"])
    seen0 = {s for batch in zero["batches"] for s in batch}
    seen1 = {s for batch in one["batches"] for s in batch}
    assert seen0 and seen1 and not seen0 & seen1  # the two ranks train on disjoint samples
    # and the resumed launch goes on where the killed one stopped in the data: one epoch, every row once
    before = [r["batches"][: SAVE * EFFECTIVE // (2 * PER_DEVICE)] for r in ranks(tmp_path / "probe1")]
    earlier = {s for batches in before for batch in batches for s in batch}
    assert len(earlier) == SAVE * EFFECTIVE and not earlier & (seen0 | seen1)
    assert len(earlier | seen0 | seen1) == ROWS
    # the Trainer's epochs agree: an optimizer step takes EFFECTIVE of the n rows (each rank alone would
    # have taken half as many, and counted half an epoch)
    n = json.loads((dataset / "manifest.json").read_text())["configs"]["k2"]["rows"]
    assert n == ROWS
    steps_per_epoch = math.ceil(math.ceil(n / (2 * PER_DEVICE)) / (EFFECTIVE // (2 * PER_DEVICE)))
    epochs = {entry["step"]: entry["epoch"] for entry in state["log_history"] if "loss" in entry}
    assert epochs[STEPS] == pytest.approx(STEPS / steps_per_epoch)
    # only rank 0 writes the run's files (each rank saves its own RNG state, as the Trainer does)
    assert {"model.safetensors", "README.md", ".skillmix_train.json.tmp"} <= set(zero["writes"])
    assert any(w.endswith("optimizer.pt") for w in zero["writes"])
    assert all(Path(w).name == "rng_state_1.pth" for w in one["writes"]), one["writes"]


class PaddedJudge:
    """The fake judge's grade followed by filler words, which the server cuts at the request's
    ``max_tokens``: every reply is billed the worst case's reply tokens, so each step spends what it
    reserved and the cap falls after a known step."""

    def __init__(self) -> None:
        from skillmix.testing.fake_openai import SkillMixResponder

        self.grader = SkillMixResponder(seed=3)

    def __call__(self, body: dict):
        return f"{self.grader(body)}\n{' filler' * 1000}"


# two torchrun launches of 2 processes, GRPO on tiny students (the judge on loopback): 40 s on a quiet 2-core
# machine (each launch about 20 s, mostly the processes' start); `make test-slow` runs it (in CI too)
@pytest.mark.slow
def test_grpo_on_two_processes_stops_at_the_judges_cap_together_and_resumes(dataset, tmp_path):
    from skillmix.testing.fake_openai import CHAT_PATH, FakeOpenAIServer
    from skillmix.training.config import resolve_recipe

    data = yaml.safe_load(resolve_recipe("tiny/grpo").read_text())
    data["data"]["datasets"] = [{"path": str(dataset), "configs": ["k2"]}]
    data["training"].update(max_steps=4, per_device_train_batch_size=2, effective_batch_size=4)
    recipe, out, prices = tmp_path / "grpo.yaml", tmp_path / "run", tmp_path / "prices.yaml"
    recipe.write_text(yaml.safe_dump(data))
    prices.write_text("fake-judge: {input: 0, output: 1000}\n")  # $0.40 a reply of max_tokens 400
    # a step: 2 processes x 2 completions x 2 grader runs x $0.40 = $3.20 at worst, and billed (PaddedJudge)
    step_worst, cap = 3.20, 8.00  # steps 1 and 2 fit ($6.40 reserved or spent), step 3 does not ($9.60)
    with FakeOpenAIServer(responder=PaddedJudge(), model="fake-judge") as server:
        judge = ["--grpo-judge-model", "fake-judge", "--grpo-judge-base-url", server.base_url,
                 "--grpo-judge-prices", str(prices)]  # fmt: skip

        def run(probe: Path, usd: float, *more: str) -> str:
            started = time.monotonic()
            launched = launch(recipe, out, probe, extra=[*judge, "--grpo-judge-max-usd", str(usd), *more])
            try:
                log, _ = launched.communicate(timeout=300)  # a rank left alone in a collective never ends
            finally:
                if launched.poll() is None:
                    os.killpg(launched.pid, signal.SIGKILL)
            assert launched.returncode == 0, log[-4000:]
            assert "collective" not in log.lower() and time.monotonic() - started < 300
            return log

        log = run(tmp_path / "probe1", cap)
        zero, one = ranks(tmp_path / "probe1")
        assert zero["first_step"] == one["first_step"] == 0
        assert zero["last_step"] == one["last_step"] == 2  # both stopped after step 2
        assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]  # one checkpoint
        usage = server.usage_totals()["fake-judge"]
        billed = usage["completion_tokens"] * 1000 / 1e6
        assert billed <= cap and usage["requests"] == server.count(200, path=CHAT_PATH)
        record = json.loads((out / "skillmix_train.json").read_text())["record"]
        line = "stopped at step 2: step 3's grading does not fit under the judge's spending cap $8.00"
        assert record["extra"]["stopped"].startswith(line) and f"skillmix: {line}" in log
        assert "its worst case is $3.20" in record["extra"]["stopped"]
        # the counts are both processes': 2 steps x 4 completions, every request sent
        assert record["extra"]["completions"] == 8
        assert record["extra"]["judge_requests"] == server.count(path=CHAT_PATH) == usage["requests"]
        assert record["extra"]["judge_spent_usd"] == pytest.approx(billed)
        assert (
            record["steps"] == 2
            and "stopped at the judge's cap after 2 of 4 steps" in (out / "README.md").read_text()
        )
        assert step_worst * 2 <= cap < step_worst * 3

        run(tmp_path / "probe2", 100, "--max-steps", "3")
        zero, one = ranks(tmp_path / "probe2")
        assert zero["first_step"] == one["first_step"] == 2  # resumed at the checkpoint, on both ranks
        assert zero["last_step"] == one["last_step"] == 3
        record = json.loads((out / "skillmix_train.json").read_text())["record"]
        assert record["steps"] == 3 and record["extra"]["stopped"] is None
