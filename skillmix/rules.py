"""The protocol's scoring rules: how the judge's grader runs of a text become its decided k+3 points.

One frozen :class:`ScoringRules` value says it all, and every place that scores takes it whole, with no
default: the dataset's deciding step (:func:`skillmix.pipelines.steps.decide_row`), the evaluation
(:func:`skillmix.evaluation.score.score_samples`, ``skillmix eval rescore``), the review's human decisions
(:mod:`skillmix.review.decide`), the GRPO reward (:mod:`skillmix.training.reward`) and the metrics
themselves (:mod:`skillmix.metrics`). The configurations build it once (``ProtocolConfig.scoring_rules``,
which ``EvalConfig`` completes with its ``unparseable`` and through which ``skillmix train --method grpo``
checks its judge's settings); a folder's recorded configuration (a dataset manifest's ``config``, an
evaluation's ``protocol``) gives it back through :meth:`ScoringRules.from_config`, which refuses a
record that does not say which rules it was scored by instead of guessing.

It lives here, at the top of the package and apart from :mod:`skillmix.metrics`, because the
configurations (pydantic, no numpy) take their defaults from :data:`DEFAULT_RULES` and the readers of a
folder's record need the rules without the numerical code; this module imports nothing of the project but
:class:`skillmix.config.ConfigError`.

**The vote is fixed**, part of the rules' description and not a field: each point is decided by a strict
majority of the grader runs that parsed (a run that could not be parsed does not vote; a tie earns 0;
:func:`skillmix.metrics.majority_vote`). No configuration offers another vote (the original code's
``np.rint`` of the mean also gives a tie 0; it differs only in counting an unreadable run as zeros, which
:attr:`ScoringRules.unparseable` covers at the level of a whole generation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from skillmix.config import ConfigError

Unparseable = Literal["zero", "drop"]
UNPARSEABLE: tuple[str, ...] = ("zero", "drop")
# A results.json written before the unparseable rule was recorded was scored by the only rule there was.
UNRECORDED_UNPARSEABLE: Unparseable = "zero"


@dataclass(frozen=True)
class ScoringRules:
    """The rules a text's points are decided by, after the fixed vote (module docstring).

    * ``length_override``: the length point is the sentence counter's verdict on the answer (1 .. max(1,
      k-1) sentences), not the judge's;
    * ``name_penalty``: a skill whose name (lower-cased, the part before any "(") the answer writes out
      earns 0 (the harder variant of 2409.19808);
    * ``unparseable``: a generation none of whose grader runs parsed, in a mean over combinations (the
      evaluation): ``zero`` scores it 0, ``drop`` leaves it out. A single text's decision does not depend
      on it: the dataset's deciding step marks such a row ``failed`` (never kept), and the GRPO reward
      follows its judge's ``grpo.judge.unparseable`` (``zero``: 0, ``drop``: no reward).
    """

    length_override: bool
    name_penalty: bool
    unparseable: Unparseable

    def __post_init__(self) -> None:
        for key in ("length_override", "name_penalty"):
            if not isinstance(getattr(self, key), bool):
                raise TypeError(f"ScoringRules.{key} must be a bool, got {getattr(self, key)!r}")
        if self.unparseable not in UNPARSEABLE:
            raise ValueError(
                f"ScoringRules.unparseable must be one of {UNPARSEABLE}, got {self.unparseable!r}"
            )

    @property
    def checks_text(self) -> bool:
        """Whether a decision needs the answer (and its skills): a text check is on."""
        return self.length_override or self.name_penalty

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], source: str = "the recorded configuration"
    ) -> ScoringRules:
        """The rules a folder recorded: ``length_override`` and ``name_penalty`` must be there (every
        dataset manifest and results.json has them); ``unparseable`` absent is ``zero``
        (:data:`UNRECORDED_UNPARSEABLE`). ConfigError (one line, naming ``source`` and the key) for a key
        missing or of the wrong type."""
        found = {}
        for key in ("length_override", "name_penalty"):
            if key not in config:
                raise ConfigError(f"{source} records no {key}: which scoring rules graded it is unknown")
            found[key] = config[key]
        found["unparseable"] = config.get("unparseable", UNRECORDED_UNPARSEABLE)
        try:
            return cls(**found)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {exc}") from None


DEFAULT_RULES = ScoringRules(length_override=True, name_penalty=True, unparseable="zero")
"""The protocol's defaults, the one place they are written: the configurations' fields take theirs from it."""
