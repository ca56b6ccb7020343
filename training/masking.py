"""Answer-only labels for any chat template: the loss sees the two assistant answers and nothing else.

Llama-2 and Mistral templates have no ``{% generation %}`` markers, so the mask is built here, the same way
for every template: the conversation is rendered with the tokenizer's chat template, each assistant answer
is found in the rendered text (as written, or stripped as Llama-2's template writes it), its span is
extended over the end-of-turn token the template writes right after it (``</s>``, ``<|im_end|>``,
``<end_of_turn>``: the model must learn to stop), and the rendered text is tokenized with character
offsets. A token is an answer token when its characters overlap an answer span; every other token gets
the label -100. The result is a pre-tokenized row (``input_ids``, ``labels``) that TRL's ``SFTTrainer``
trains on as it is, padded or packed. A preference pair is two such conversations (the prompt with the
chosen continuation, and with the rejected one): :func:`tokenize_pairs` gives each its ``input_ids`` and
a completion mask, 1 exactly where the SFT labels are kept, for DPO's log-probabilities.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100


class MaskError(ValueError):
    """A conversation whose answers cannot be located or that does not fit; names the row."""


@dataclass
class Tokenized:
    input_ids: list[int]
    labels: list[int]
    prompt_tokens: int  # tokens before the first answer token
    truncated: bool
    answer_tokens_lost: int = 0  # answer tokens (end-of-turn tokens included) past max_length

    def row(self) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids, "labels": self.labels}


def answer_spans(
    rendered: str, messages: list[dict[str, str]], end_markers: list[str]
) -> list[tuple[int, int]]:
    """Character spans of the assistant answers in ``rendered``, each with its end-of-turn marker."""
    spans, cursor = [], 0
    markers = sorted(end_markers, key=len, reverse=True)
    for message in messages:
        content = message["content"]
        found = -1
        for candidate in (content, content.strip()):
            found = rendered.find(candidate, cursor) if candidate else -1
            if found >= 0:
                content = candidate
                break
        if found < 0:
            raise MaskError(f"the chat template does not write the {message['role']} turn as given")
        end = found + len(content)
        if message["role"] == "assistant":
            spans.append((found, _past_end_marker(rendered, end, markers)))
        cursor = end
    return spans


def _past_end_marker(rendered: str, end: int, markers: list[str]) -> int:
    """``end`` moved over whitespace and one end-of-turn marker written right after the answer, if any."""
    probe = end
    while probe < len(rendered) and rendered[probe] in " \t":
        probe += 1
    for marker in markers:
        if marker and rendered.startswith(marker, probe):
            return probe + len(marker)
    return end


_ENDING = re.compile(r"end|eot|</s>", re.IGNORECASE)


def end_markers(tokenizer: Any) -> list[str]:
    """The tokens that can close an assistant turn: the end-of-sequence token and the special or added
    tokens named like an end (``<|im_end|>``, ``<end_of_turn>``, ``<|eot_id|>``, ``<|end|>``), never one
    that opens the next turn (``<|im_start|>``, ``[INST]``)."""
    names = set(getattr(tokenizer, "all_special_tokens", []) or [])
    names.update(str(t) for t in (getattr(tokenizer, "get_added_vocab", dict)() or {}))
    markers = {n for n in names if n and _ENDING.search(n) and "header" not in n}
    eos = getattr(tokenizer, "eos_token", None)
    return sorted(markers | ({eos} if eos else set()))


def tokenize_conversation(
    tokenizer: Any, messages: list[dict[str, str]], max_length: int, markers: list[str] | None = None
) -> Tokenized:
    """``input_ids`` and ``labels`` (-100 on every token outside the answers) of one conversation."""
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = answer_spans(rendered, messages, end_markers(tokenizer) if markers is None else markers)
    encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    labels = [IGNORE_INDEX] * len(ids)
    for index, (start, end) in enumerate(offsets):
        if end > start and any(start < s_end and end > s_start for s_start, s_end in spans):
            labels[index] = ids[index]
    answer_at = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    if not answer_at:
        raise MaskError("no token of the answers survives tokenization")
    lost = sum(1 for index in answer_at if index >= max_length)
    return Tokenized(ids[:max_length], labels[:max_length], answer_at[0], len(ids) > max_length, lost)


def tokenize_text(tokenizer: Any, text: str, max_length: int) -> Tokenized:
    """A plain text, trained on entirely, ending with the end-of-sequence token."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id, *ids]
    if tokenizer.eos_token_id is not None:
        ids = [*ids, tokenizer.eos_token_id]
    ids = ids[:max_length]
    return Tokenized(ids, list(ids), 0, False)


def tokenize_rows(
    tokenizer: Any, conversations: list[tuple[str, list[dict[str, str]]]], max_length: int, log: Any = print
) -> list[dict[str, list[int]]]:
    """Every conversation tokenized with answer-only labels; a prompt longer than ``max_length`` stops the
    run naming the row (it would train on nothing), longer conversations are truncated and counted."""
    markers = end_markers(tokenizer)
    rows, truncated = [], 0
    for row_id, messages in conversations:
        try:
            item = tokenize_conversation(tokenizer, messages, max_length, markers)
        except MaskError as exc:
            raise MaskError(f"row {row_id}: {exc}") from None
        if item.prompt_tokens >= max_length:
            raise MaskError(
                f"training.max_length {max_length} is shorter than the prompt of row {row_id} "
                f"({item.prompt_tokens} tokens before its first answer)"
            )
        truncated += item.truncated
        rows.append(item.row())
    if truncated:
        log(f"{truncated} of {len(rows)} conversations are longer than max_length {max_length}: truncated")
    return rows


SIDES = ("chosen", "rejected")


@dataclass
class PairRows:
    """The tokenized pairs kept for training, and the ids of the pairs dropped because a side would lose
    answer tokens past ``max_length`` (by side: a pair can be in both)."""

    rows: list[dict[str, list[int]]]
    total: int
    lost: dict[str, list[str]]

    @property
    def dropped(self) -> int:
        return self.total - len(self.rows)

    def summary(self, max_length: int) -> str:
        chosen, rejected = (len(self.lost[side]) for side in SIDES)
        both = len(set(self.lost["chosen"]) & set(self.lost["rejected"]))
        return (
            f"{self.dropped} of {self.total} pairs dropped: a side would lose answer tokens (the round-2 "
            f"answer or its end-of-turn token) past max_length {max_length} (chosen side: {chosen}, "
            f"rejected side: {rejected}, both: {both}); {len(self.rows)} pairs trained"
        )


def tokenize_pairs(
    tokenizer: Any,
    pairs: list[tuple[str, list[dict[str, str]], list[dict[str, str]]]],
    max_length: int,
    log: Any = print,
) -> PairRows:
    """Every ``(pair id, prompt + chosen, prompt + rejected)`` tokenized as :func:`tokenize_conversation`
    does, as ``chosen_input_ids``, ``chosen_mask``, ``rejected_input_ids``, ``rejected_mask`` (the mask is 1
    on the answers' tokens, with their end-of-turn tokens, and 0 on the prompt and the user's round-2
    request). A pair is kept only if both sides keep every answer token within ``max_length`` (a side cut
    inside its round-2 answer would train on part of the graded text, or on none of it); the dropped pairs
    are counted by side and logged, and none kept stops the run."""
    markers = end_markers(tokenizer)
    rows, lost = [], {side: [] for side in SIDES}
    for pair_id, *conversations in pairs:
        sides = {}
        for side, messages in zip(SIDES, conversations, strict=True):
            try:
                sides[side] = tokenize_conversation(tokenizer, messages, max_length, markers)
            except MaskError as exc:
                raise MaskError(f"row {pair_id} ({side}): {exc}") from None
            if sides[side].answer_tokens_lost:
                lost[side].append(pair_id)
        if any(item.answer_tokens_lost for item in sides.values()):
            continue
        rows.append(
            {
                f"{side}_{key}": value
                for side, item in sides.items()
                for key, value in (("input_ids", item.input_ids), ("mask", answer_mask(item.labels)))
            }
        )
    kept = PairRows(rows, len(pairs), lost)
    if kept.dropped:
        log(kept.summary(max_length))
    if not rows:
        raise MaskError(f"training.max_length {max_length}: no pair keeps both sides' answers; raise it")
    return kept


def answer_mask(labels: list[int]) -> list[int]:
    """1 where ``labels`` keeps a token (an answer token), 0 where it is :data:`IGNORE_INDEX`."""
    return [int(label != IGNORE_INDEX) for label in labels]
