"""What a prediction takes and gives, defined once: the checks every input passes (the Python API, the CLI
and the HTTP service all use them) and the typed rows `Classifier.predict` returns, which the service's
OpenAPI schema shows as they are."""

from __future__ import annotations

from typing_extensions import NotRequired, TypedDict  # pydantic reads TypedDicts from here on Python < 3.12

from lsllm.data.words import word_spans
from lsllm.errors import LsllmError

SequenceInput = str | tuple[str, str]
TokenInput = str | list[str]


class Ranked(TypedDict):
    label: str | int
    score: float


class SequencePrediction(TypedDict):
    """One label per text: the likeliest label, its probability, and every label's probability."""

    label: str | int
    score: float
    probs: dict[str, float]
    top: NotRequired[list[Ranked]]  # with top_k: the k likeliest labels, best first
    truncated: NotRequired[bool]  # present (true) when the text was cut to max_length tokens


class MultiLabelPrediction(TypedDict):
    """Several labels per text: every label whose probability reaches its threshold, best first (maybe
    none), and every label's probability (independent sigmoids, so they need not sum to 1)."""

    labels: list[Ranked]
    probs: dict[str, float]
    top: NotRequired[list[Ranked]]  # with top_k: the k likeliest labels, best first, above threshold or not
    truncated: NotRequired[bool]


class RegressionPrediction(TypedDict):
    """A number per text."""

    value: float
    truncated: NotRequired[bool]


class Entity(TypedDict):
    """Words start..end (end exclusive); for raw text also its characters, text[start_char:end_char].
    `score` is the mean over its words of each word's probability of its predicted tag: the score
    transformers' token-classification pipeline gives a group of words (aggregation_strategy="first")."""

    type: str
    score: float
    start: int
    end: int
    text: str
    start_char: NotRequired[int]
    end_char: NotRequired[int]


class TokenPrediction(TypedDict):
    """One tag per word, its probability (None for a word the tokenizer gave no token), the entities."""

    tokens: list[str]
    tags: list[str]
    scores: list[float | None]
    entities: list[Entity]


Prediction = SequencePrediction | MultiLabelPrediction | RegressionPrediction | TokenPrediction


def check_min_score(min_score: object, task: str) -> None:
    if min_score is None:
        return
    if task != "token":
        raise LsllmError(f"min_score applies to token runs only; leave it out for a {task} run")
    if isinstance(min_score, bool) or not isinstance(min_score, int | float) or not 0 <= min_score <= 1:
        raise LsllmError(f"min_score must be a number from 0 to 1, not {min_score!r}")


def drop_weak_entities(rows: list[TokenPrediction], min_score: float | None) -> list[TokenPrediction]:
    """The rows with only the entities scoring at least `min_score`; tags and word scores are kept as
    predicted, so a row still shows what the model saw."""
    if min_score is None:
        return rows
    return [{**row, "entities": [e for e in row["entities"] if e["score"] >= min_score]} for row in rows]


def check_top_k(top_k: object, task: str) -> None:
    if top_k is None:
        return
    if task != "sequence":
        raise LsllmError(f"top_k applies to sequence runs only; leave it out for a {task} run")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise LsllmError(f"top_k must be a whole number of at least 1, not {top_k!r}")


def check_input(item: object, number: int, task: str, text_pair: bool) -> SequenceInput | TokenInput:
    """One input as the run takes it (a text, a (text, text_pair) pair, or for token runs a list of
    words), or an LsllmError that names input `number` (1-based) and the fix."""
    name = f"input {number}"
    if task == "token":
        if isinstance(item, str):
            words = word_spans(item)
        elif isinstance(item, list | tuple) and all(isinstance(word, str) for word in item):
            words = item
            for position, word in enumerate(words, start=1):
                if not word.strip():
                    raise LsllmError(
                        f"{name} has a blank word at position {position}; remove it or give it text"
                    )
        else:
            raise LsllmError(f"{name} must be a text or a list of words")
        if not words:
            raise LsllmError(f"{name} has no words; give a non-empty text")
        return item if isinstance(item, str) else list(item)
    if text_pair:
        if isinstance(item, str) or not isinstance(item, list | tuple) or len(item) != 2:
            raise LsllmError(f"{name}: this run was trained on text pairs; send [text, text_pair]")
        item = tuple(item)
    elif not isinstance(item, str):
        raise LsllmError(f"{name} is a list; this run takes one text per input, not pairs or words")
    if not all(isinstance(part, str) for part in (item if isinstance(item, tuple) else (item,))):
        raise LsllmError(f"{name} must hold texts")
    if not (item if isinstance(item, str) else item[0]).strip():
        raise LsllmError(f"{name} is empty; give a non-empty text")
    return item
