"""Turn rows and CoNLL column files into examples: texts with their labels (a class, a list of classes or
a number), or words with BIO tags."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lsllm.data.sources import Source, holds_rows, read_rows, source_name
from lsllm.data.tables import read_text, shown, split_lines
from lsllm.errors import LsllmError

RECORD_TOKEN_SUFFIXES = (".json", ".jsonl", ".parquet")
_TAG = re.compile(r"([BIESLU])-(\S+)")
_BIO_PREFIX = {"B": "B", "I": "I", "S": "B", "U": "B", "E": "I", "L": "I"}
_TAG_FORMS = "tags must be O or B-/I-/E-/S-/L-/U- plus an entity type (e.g. B-PER)"
_COLUMN_GAP = re.compile(r"[ \t]+")  # CoNLL columns: a word may hold other spaces (U+00A0 in "10 000")
_SHOWN_COLUMNS = 20
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")  # 0/1 label columns, read case-insensitively

Label = str | int | float | list[str | int]


@dataclass
class SequenceExample:
    """A text (or text pair) and its label: a class name or whole number, a list of them (multi-label), or
    a float (regression)."""

    text: str
    text_pair: str | None = None
    label: Label | None = None


@dataclass
class TokenExample:
    tokens: list[str]
    tags: list[str] | None = None


def read_sequence_examples(
    source: Source,
    text_fields: Sequence[str] = ("text",),
    label_field: str = "label",
    pair: bool = False,
    require_labels: bool = True,
    numeric: bool = False,
    label_columns: Sequence[str] | None = None,
    name: str | None = None,
) -> list[SequenceExample]:
    """Read a table or dataset of texts (or text pairs) and their labels: in `label_field` a class, or a
    list of classes, or with `numeric` a number; or with `label_columns` one 0/1 column per class. `name`
    is how messages call the source (default: its path or spec)."""
    fields = (text_fields,) if isinstance(text_fields, str) else tuple(text_fields)
    if pair and len(fields) != 2:
        raise LsllmError(
            f"text pairs need exactly two text fields, got {len(fields)} ({', '.join(fields)}); "
            "give --text-field twice, once per side of the pair"
        )
    if not fields:
        raise LsllmError("no text field given; name the text column with --text-field")
    path = name or source_name(source)
    records = read_rows(source, path)
    columns = _columns(records)
    for field in fields:
        _require_column(field, columns, path, "--text-field")
    label_fields = list(label_columns or [label_field])
    has_labels = all(field in columns for field in label_fields)
    if require_labels:
        for field in label_fields:
            _require_column(field, columns, path, "--label-columns" if label_columns else "--label-field")
    examples = []
    for row, record in enumerate(records, start=1):
        texts = [_text_value(record.get(field), field, row, path) for field in fields]
        if not has_labels:
            label = None
        elif label_columns:
            label = _labels_from_columns(record, label_columns, row, path, require_labels)
        elif numeric:
            label = _number_value(record.get(label_field), row, path)
        else:
            label = _label_value(record.get(label_field), row, path)
        if require_labels and label is None:
            raise LsllmError(
                f"row {row} of {path} has no label in column '{label_field}'; fill it in or remove the row"
            )
        if pair:
            examples.append(SequenceExample(texts[0], texts[1], label))
        else:
            examples.append(SequenceExample("\n".join(texts), None, label))
    return examples


def read_token_examples(
    source: Source,
    tokens_field: str = "tokens",
    tags_field: str = "tags",
    require_labels: bool = True,
    name: str | None = None,
) -> list[TokenExample]:
    """Read tokenised sentences with BIO tags from JSON/JSONL/Parquet rows, a dataset or a CoNLL column
    file; `name` is how messages call the source (default: its path or spec)."""
    if holds_rows(source, RECORD_TOKEN_SUFFIXES):
        return _token_examples_from_records(source, name, tokens_field, tags_field, require_labels)
    return _token_examples_from_conll(source, require_labels)


def normalize_tags(tags: Iterable[str], *, where: str = "") -> list[str]:
    """Convert IOB1, BIO and IOBES/BILOU tags to BIO so every format trains the same label set.

    `where` (e.g. "row 3 of train.jsonl") is added to error messages.
    """
    normalized = []
    open_type = None  # entity type that a following I- tag may continue
    for tag in tags:
        if tag == "O":
            normalized.append("O")
            open_type = None
            continue
        match = _TAG.fullmatch(tag) if isinstance(tag, str) else None
        if match is None:
            location = f" in {where}" if where else ""
            raise LsllmError(f"invalid tag {tag!r:.60}{location}; {_TAG_FORMS}")
        written, entity_type = match.groups()
        prefix = _BIO_PREFIX[written]
        if prefix == "I" and open_type != entity_type:
            prefix = "B"
        normalized.append(f"{prefix}-{entity_type}")
        open_type = entity_type if written in "BI" else None
    return normalized


def _columns(records: list[dict]) -> list[str]:
    """All field names in first-seen order (JSON rows may differ in their keys)."""
    return list(dict.fromkeys(key for record in records for key in record))


def _require_column(field: str, columns: list[str], path: str | os.PathLike, flag: str) -> None:
    if field not in columns:
        names = ", ".join(map(shown, columns[:_SHOWN_COLUMNS]))
        if len(columns) > _SHOWN_COLUMNS:
            names += f", ... {len(columns)} in all"
        raise LsllmError(
            f"column '{shown(field)}' not found in {path} (columns: {names}); choose one with {flag}"
        )


def _text_value(value: Any, field: str, row: int, path: str | os.PathLike) -> str:
    if not isinstance(value, str) or not value.strip():
        found = "empty text" if isinstance(value, str) else "no text" if value is None else "a non-string"
        raise LsllmError(
            f"row {row} of {path} has {found} in column '{field}'; give it text or remove the row"
        )
    return value


def _label_value(value: Any, row: int, path: str | os.PathLike) -> str | int | list[str | int] | None:
    """A class label as written (strings stripped), or a list of them for a multi-label row; empty, null
    and NaN mean no label, while an empty list is a row with none of the labels."""
    if isinstance(value, list):
        items = [_class_value(item, row, path) for item in value]
        if any(item is None for item in items):
            raise LsllmError(
                f"row {row} of {path} has an empty or missing label in its list {value!r:.60}; "
                "remove it from the list"
            )
        return items  # type: ignore[return-value]
    return _class_value(value, row, path)


def _class_value(value: Any, row: int, path: str | os.PathLike) -> str | int | None:
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return int(value)
    if isinstance(value, str):
        return value.strip() or None
    if value is None or isinstance(value, int):
        return value
    raise LsllmError(
        f"row {row} of {path} has label {value!r:.60}, which is not a class name or integer; use one string"
        " or integer label per row (or a list of them for multi-label; --task regression for numbers)"
    )


def _number_value(value: Any, row: int, path: str | os.PathLike) -> float | None:
    """A regression target: a number, or a string that reads as one; empty, null and NaN mean none."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise LsllmError(
                f"row {row} of {path} has label {value!r:.60}, which is not a number; --task regression"
                " needs a number in every row"
            ) from None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "a list of labels" if isinstance(value, list) else "the label"
        raise LsllmError(
            f"row {row} of {path} has {kind} {value!r:.60}, not a number; --task regression needs one"
            " number per row"
        )
    if math.isnan(value):
        return None
    if math.isinf(value):
        raise LsllmError(f"row {row} of {path} has label {value}; give a finite number")
    return float(value)


def _labels_from_columns(
    record: dict, columns: Sequence[str], row: int, path: str | os.PathLike, required: bool
) -> list[str] | None:
    """The labels of a row that marks each label in a column of its own, with 1 (has it) or 0."""
    labels = []
    for column in columns:
        value = record.get(column)
        text = str(value).strip().lower() if value is not None else ""
        if isinstance(value, float) and value in (0.0, 1.0):
            text = str(int(value))
        if text in _TRUE:
            labels.append(column)
        elif text not in _FALSE:
            if not text and not required:
                return None
            raise LsllmError(
                f"row {row} of {path} has {value!r:.60} in label column '{column}'; each label column"
                " holds 1 (the row has that label) or 0"
            )
    return labels


def _token_examples_from_records(
    source: Source, name: str | None, tokens_field: str, tags_field: str, require_labels: bool
) -> list[TokenExample]:
    path = name or source_name(source)
    records = read_rows(source, path)
    columns = _columns(records)
    _require_column(tokens_field, columns, path, "--tokens-field")
    if require_labels:
        _require_column(tags_field, columns, path, "--tags-field")
    examples = []
    for row, record in enumerate(records, start=1):
        where = f"row {row} of {path}"
        tokens = _word_list(record.get(tokens_field), tokens_field, where)
        check_words(tokens, tokens_field, where)
        tags = record.get(tags_field)
        if tags is None and not require_labels:
            examples.append(TokenExample(tokens))
            continue
        tags = _word_list(tags, tags_field, where)
        if len(tags) != len(tokens):
            raise LsllmError(
                f"{where} has {len(tokens)} tokens but {len(tags)} tags; give exactly one tag per token"
            )
        examples.append(TokenExample(tokens, normalize_tags(tags, where=where)))
    return examples


def check_words(words: list[str], field: str, where: str) -> None:
    """A word must show something: an empty or all-whitespace one gets no token of its own, so its tag
    could be neither learned nor predicted."""
    for position, word in enumerate(words, start=1):
        if not word.strip():
            raise LsllmError(
                f"{where} has a blank word ({word!r:.20}) at position {position} of '{field}'; "
                "remove it or give it text"
            )


def _word_list(value: Any, field: str, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise LsllmError(
            f"{where} needs a non-empty list of strings in '{field}' (found {value!r:.60}); fix that row"
        )
    return value


def _token_examples_from_conll(path: str | os.PathLike, require_labels: bool) -> list[TokenExample]:
    """Read one token per line (word first, tag last), blank lines between sentences."""
    text = read_text(path)
    lines = [(number, _conll_columns(line)) for number, line in enumerate(split_lines(text), start=1)]
    labelled = require_labels or all(len(columns) > 1 for _, columns in lines if columns)
    sentences: list[list[tuple[int, list[str]]]] = [[]]
    for number, columns in lines:
        if not columns or columns[0] == "-DOCSTART-":
            sentences.append([])
            continue
        if labelled and len(columns) < 2:
            raise LsllmError(
                f"{path} line {number} has only one column ({columns[0]!r:.60}) but tags are required; "
                "put the tag in the last column after a tab or space"
            )
        sentences[-1].append((number, columns))
    examples = [_conll_sentence(sentence, labelled, path) for sentence in sentences if sentence]
    if not examples:
        raise LsllmError(
            f"{path} contains no sentences; put one token per line and a blank line between sentences"
        )
    return examples


def _conll_columns(line: str) -> list[str]:
    """A CoNLL line's columns: split at spaces and tabs only, so a word keeps any other space inside it
    ("10 000" with U+00A0); whitespace of any kind around the line is dropped ([] for a blank line)."""
    line = line.strip()
    return _COLUMN_GAP.split(line) if line else []


def _conll_sentence(
    sentence: list[tuple[int, list[str]]], labelled: bool, path: str | os.PathLike
) -> TokenExample:
    tokens = [columns[0] for _, columns in sentence]
    if not labelled:
        return TokenExample(tokens)
    where = f"{path} lines {sentence[0][0]}-{sentence[-1][0]}"
    return TokenExample(tokens, normalize_tags([columns[-1] for _, columns in sentence], where=where))
