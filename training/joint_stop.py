"""The joint stop of ``skillmix train --method grpo``: every process stops at the same step, at the judge's
spending cap or when too many completions could not be graded.

Each process grades its own completions (TRL runs the reward functions per process, before it gathers the
rewards), so whether the next step may run cannot be decided per process: the one that stopped alone would
leave the others waiting in TRL's ``gather`` (a gloo "collective mismatch" on CPU, a hang on GPUs). So
rank 0 decides and every process follows:

* before ``train()`` (for the launch's first step) and in ``on_step_end`` of step N (for step N+1; in
  transformers 5.23 ``on_step_begin`` resets ``should_save`` before the callbacks run, and
  ``should_training_stop`` is read only after the step), every process's counts of the step are summed
  (``gather_object``) and rank 0 decides: more than ``grpo.judge.max_ungraded_share`` of the step's
  completions ungraded stops the run; under a spending cap, the next step's worst case (every process's
  completions of its generation batch x grader runs x the worst request, :func:`worst_request`) is
  reserved in the judge's ledger, one reservation per process, or the run stops when it does not fit.
  The decision reaches every process through accelerate's ``broadcast_object_list``;
* a stop sets ``should_save`` and ``should_training_stop`` on every process: the Trainer saves the step's
  checkpoint through its own flow (a collective under FSDP/ZeRO, so every process takes part) and leaves
  its loop; the command exits 0 and the same command with a higher cap (or share) resumes there.

TRL 1.16 generates a generation batch every ``steps_per_generation x num_iterations`` micro-steps;
:func:`skillmix.training.grpo.grpo_config` sets ``steps_per_generation`` to the gradient accumulation
(TRL's default) and ``num_iterations`` to 1, so each optimizer step grades exactly one generation batch of
per-device batch x accumulation completions per process.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

from skillmix.training.reward import COUNTS, Combination, Judge, JudgeReward, cap_message


def worst_request(judge: Judge, combinations: list[Combination], tokenizer: Any, tokens: int) -> float:
    """The most one grader request of this run can cost: the longest grader prompt of the run's
    combinations with an answer of ``tokens`` tokens, each of the student tokenizer's longest text, times
    3 (a token that breaks a UTF-8 character decodes to U+FFFD, 3 bytes), and ``max_tokens`` of reply."""
    longest = max(len(tokenizer.decode([i]).encode("utf-8")) for i in range(len(tokenizer)))
    answer = "x" * (tokens * 3 * max(1, longest))
    return max(judge.requests(combination, answer)[2] for combination in combinations)


class JointStop(TrainerCallback):
    """The decision of rank 0, followed by every process (module docstring). ``per_process`` is one
    process's worst case of one step's grading; ``processes`` the launch's world size; ``judge`` the
    judge's protocol, for the run record."""

    def __init__(
        self,
        reward: JudgeReward,
        per_process: float,
        processes: int,
        max_share: float,
        judge: dict[str, Any],
    ) -> None:
        self.reward, self.per_process, self.processes = reward, per_process, processes
        self.max_share, self.judge = max_share, judge
        self.rank = int(os.environ.get("RANK", "0"))
        self.run_id = uuid.uuid4().hex[:12]  # rank 0's names the reservations
        self.totals = dict.fromkeys(COUNTS, 0)
        self.stop: dict[str, Any] | None = None
        self.pending: list[str] = []  # rank 0: the reservations of a step not yet graded

    # -- the decisions ------------------------------------------------------------------------------------
    def start(self, step: int, max_steps: int) -> bool:
        """Before ``train()``: whether the launch's first step (``step + 1``) may run (all processes)."""
        decision = self._joint(lambda: self._next(step) if step < max_steps else {})
        return self._follow(decision, step, max_steps)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        counts = self._summed(self.reward.take_counts())
        step, max_steps = state.global_step, state.max_steps
        last = control.should_training_stop  # the step count is reached (the Trainer's own flow)

        def decide() -> dict[str, Any]:
            self.pending = []  # the finished step drew on (and released) them
            stop = self._share_stop(step, counts)
            return stop if stop or last else self._next(step)

        if not self._follow(self._joint(decide), step, max_steps):
            control.should_save = True  # the Trainer's flow saves checkpoint-N on every process
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for rid in self.pending:  # reserved for a step that will not run
            self.reward.judge.client.cache.release(rid)
        self.pending = []

    # -- rank 0 --------------------------------------------------------------------------------------------
    def _next(self, step: int) -> dict[str, Any]:
        """Reserve step ``step + 1``'s worst case, one reservation per process, or say why it cannot run."""
        cache, cap = self.reward.judge.client.cache, self.reward.judge.settings.client.max_usd
        if cap is None:
            return {}
        ids = [f"grpo-{self.run_id}:step-{step + 1}:rank{r}" for r in range(self.processes)]
        for i, rid in enumerate(ids):
            if not cache.reserve(rid, self.per_process, cap):
                for held in ids[:i]:
                    cache.release(held)
                worst = self.per_process * self.processes
                reason = cap_message(step + 1, cap, cache.spent_usd(), worst)
                return {"stop": "cap", "reason": reason}
        self.pending = ids
        return {"reservations": ids}

    def _share_stop(self, step: int, counts: dict[str, int]) -> dict[str, Any]:
        done, failed = counts["completions"], counts["ungraded"]
        if not done or failed / done <= self.max_share:
            return {}
        reason = (
            f"{failed} of step {step}'s {done} completions ({failed / done:.0%}, all processes) could not be "
            f"graded (the judge's server failed them after the retries), more than "
            f"grpo.judge.max_ungraded_share {self.max_share:.0%}"
        )
        return {"stop": "ungraded", "reason": reason}

    # -- every process -------------------------------------------------------------------------------------
    def _joint(self, decide: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Rank 0's decision, on every process (a collective: every process calls it at the same point)."""
        from accelerate.utils import broadcast_object_list

        decision, failure = None, None
        if self.rank == 0:
            try:
                decision = decide()
            except Exception as exc:  # the others must not wait for a decision that never comes
                failure = exc
                decision = {"error": f"{type(exc).__name__}: {exc}"}
        decision = broadcast_object_list([decision])[0]
        if failure is not None:
            raise failure
        if "error" in decision:
            raise RuntimeError(f"rank 0 could not decide whether the next step runs: {decision['error']}")
        return decision

    def _summed(self, counts: dict[str, int]) -> dict[str, int]:
        """This step's counts summed over processes (a collective), added to the run's totals."""
        from accelerate.utils import gather_object

        gathered = gather_object([counts]) if self.processes > 1 else [counts]
        summed = {name: sum(c[name] for c in gathered) for name in COUNTS}
        for name in COUNTS:
            self.totals[name] += summed[name]
        return summed

    def _follow(self, decision: dict[str, Any], step: int, max_steps: int) -> bool:
        """Take the reservation rank 0 made for this process, or stop; whether training goes on."""
        ids = decision.get("reservations")
        self.reward.judge.reservation = ids[self.rank] if ids else None
        if "stop" not in decision:
            return True
        self.stop = {"kind": decision["stop"], "step": step, "of": max_steps, "reason": decision["reason"]}
        return False

    @property
    def stopped(self) -> str | None:
        """The one line that says why the run stopped (None: it did not)."""
        return None if self.stop is None else f"stopped at step {self.stop['step']}: {self.stop['reason']}"

    def record_extra(self) -> dict[str, Any]:
        """What the run record adds: the stop, the counts summed over processes, the spend."""
        client = self.reward.judge.client
        return {
            "judge": self.judge,
            "rewards": self.reward.journal.name,
            "stopped": self.stopped,
            "stop": self.stop,
            "judge_spent_usd": client.cache.spent_usd(),
            "judge_requests": self.totals["requests_sent"],
            "judge_cached": self.totals["cached"],
            "completions": self.totals["completions"],
            "ungraded": self.totals["ungraded"],
            "unparseable": self.totals["unparseable"],
            "truncated": self.totals["truncated"],
            "judge_step_worst_usd": self.per_process * self.processes,
        }
