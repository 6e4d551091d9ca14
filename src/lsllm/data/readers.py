"""Read labelled tables (CSV, TSV, JSON, JSONL, Parquet) and CoNLL token files into examples."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsllm.errors import LsllmError, first_line

TABLE_SUFFIXES = (".csv", ".json", ".jsonl", ".parquet", ".tsv")
RECORD_TOKEN_SUFFIXES = (".json", ".jsonl", ".parquet")
_TAG = re.compile(r"([BIESLU])-(\S+)")
_BIO_PREFIX = {"B": "B", "I": "I", "S": "B", "U": "B", "E": "I", "L": "I"}
_TAG_FORMS = "tags must be O or B-/I-/E-/S-/L-/U- plus an entity type (e.g. B-PER)"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_COLUMN_GAP = re.compile(r"[ \t]+")  # CoNLL columns: a word may hold other spaces (U+00A0 in "10 000")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # \uD800-\uDFFF: only valid as a pair
_SHOWN_COLUMNS = 20


@dataclass
class SequenceExample:
    text: str
    text_pair: str | None = None
    label: str | int | None = None


@dataclass
class TokenExample:
    tokens: list[str]
    tags: list[str] | None = None


def read_records(path: str | os.PathLike) -> list[dict]:
    """Read a table into one dict per row, choosing the format by file extension."""
    suffix = Path(path).suffix.lower()
    readers = {
        ".csv": _read_csv,
        ".tsv": _read_tsv,
        ".json": _read_json,
        ".jsonl": _read_jsonl,
        ".parquet": _read_parquet,
    }
    if suffix not in readers:
        raise LsllmError(
            f"unsupported file type '{suffix or '(none)'}' for {path}; use one of {', '.join(TABLE_SUFFIXES)}"
        )
    records = readers[suffix](path)
    if not records:
        raise LsllmError(f"{path} has no data rows; add rows or point to the right file")
    return records


def read_sequence_examples(
    path: str | os.PathLike,
    text_fields: Sequence[str] = ("text",),
    label_field: str = "label",
    pair: bool = False,
    require_labels: bool = True,
) -> list[SequenceExample]:
    """Read a table of texts (or text pairs) and class labels for sequence classification."""
    fields = (text_fields,) if isinstance(text_fields, str) else tuple(text_fields)
    if pair and len(fields) != 2:
        raise LsllmError(
            f"text pairs need exactly two text fields, got {len(fields)} ({', '.join(fields)}); "
            "give --text-field twice, once per side of the pair"
        )
    if not fields:
        raise LsllmError("no text field given; name the text column with --text-field")
    records = read_records(path)
    columns = _columns(records)
    for field in fields:
        _require_column(field, columns, path, "--text-field")
    has_labels = label_field in columns
    if require_labels:
        _require_column(label_field, columns, path, "--label-field")
    examples = []
    for row, record in enumerate(records, start=1):
        texts = [_text_value(record.get(field), field, row, path) for field in fields]
        label = _label_value(record.get(label_field), row, path) if has_labels else None
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
    path: str | os.PathLike,
    tokens_field: str = "tokens",
    tags_field: str = "tags",
    require_labels: bool = True,
) -> list[TokenExample]:
    """Read tokenised sentences with BIO tags from JSON/JSONL/Parquet rows or a CoNLL column file."""
    if Path(path).suffix.lower() in RECORD_TOKEN_SUFFIXES:
        return _token_examples_from_records(path, tokens_field, tags_field, require_labels)
    return _token_examples_from_conll(path, require_labels)


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


def _check_file(path: str | os.PathLike) -> None:
    """Fail early with a plain message for paths that cannot be a data file."""
    if not os.path.exists(path):
        raise LsllmError(f"file not found: {path}; check the path")
    if os.path.isdir(path):
        raise LsllmError(f"{path} is a directory, not a file; give the path of a data file inside it")


def _read_text(path: str | os.PathLike) -> str:
    """Read a UTF-8 file (a BOM is dropped) keeping line endings, so CSV can see quoted newlines."""
    _check_file(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise LsllmError(
            f"{path} is not UTF-8 text (bad byte at offset {exc.start}); re-save it with UTF-8 encoding"
        ) from exc
    except OSError as exc:
        raise LsllmError(f"cannot read {path} ({exc.strerror}); check the file's permissions") from exc


def _lines(text: str) -> list[str]:
    """Split on CRLF, LF or a lone CR (old Mac files) only, so characters like U+2028 inside JSON strings
    stay intact (JSON allows no raw CR or LF inside a string)."""
    return _LINE_BREAK.split(text)


@contextlib.contextmanager
def _any_field_size() -> Iterator[None]:
    """Lift the csv module's 128 KiB field limit while reading: a long document is a valid field."""
    previous = csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _read_csv(path: str | os.PathLike) -> list[dict]:
    return _read_delimited(path, csv.reader(io.StringIO(_read_text(path), newline=""), strict=True))


def _read_tsv(path: str | os.PathLike) -> list[dict]:
    """TSV has no quoting, so quotes in text (`it 's a "charming" movie`) are kept as written."""
    text = io.StringIO(_read_text(path), newline="")
    return _read_delimited(path, csv.reader(text, delimiter="\t", quoting=csv.QUOTE_NONE))


def _read_delimited(path: str | os.PathLike, reader: Any) -> list[dict]:
    """Turn csv rows under a header row into dicts, rejecting rows whose field count is off."""
    try:
        with _any_field_size():
            rows = [(reader.line_num, row) for row in reader if row]
    except csv.Error as exc:
        raise LsllmError(
            f"cannot parse {path} near line {reader.line_num} ({exc}); "
            "check for an unbalanced double quote or stray delimiter at or before that line"
        ) from exc
    if not rows:
        return []
    header = [name.strip() for name in rows[0][1]]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise LsllmError(
            f"column '{duplicates[0]}' appears twice in the header of {path}; rename one of them"
        )
    records = []
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise LsllmError(
                f"{path} line {line} has {len(row)} fields but the header has {len(header)}; "
                "check that line for a stray delimiter or a missing value"
            )
        records.append(dict(zip(header, row, strict=True)))
    return records


def _read_json(path: str | os.PathLike) -> list[dict]:
    """A .json file is either a list of objects or JSON lines."""
    text = _read_text(path)
    if not text.lstrip().startswith("["):
        return _parse_jsonl(text, path)
    try:
        items = _load_json(text, str(path))
    except json.JSONDecodeError as exc:
        raise LsllmError(
            f"{path} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); fix the file there"
        ) from exc
    check_surrogates = _SURROGATE_ESCAPE.search(text) is not None
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise LsllmError(
                f"item {number} of {path} is not a JSON object; make every item an object of named fields"
            )
        if check_surrogates and _has_surrogate(item):
            raise LsllmError(f"item {number} of {path} {_SURROGATE_FIX}")
    return items


def _read_jsonl(path: str | os.PathLike) -> list[dict]:
    return _parse_jsonl(_read_text(path), path)


def _parse_jsonl(text: str, path: str | os.PathLike) -> list[dict]:
    """Parse one JSON object per line, skipping blank lines."""
    records = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = _load_json(line, f"{path} line {number}")
        except json.JSONDecodeError as exc:
            raise LsllmError(
                f"{path} line {number} is not valid JSON ({exc.msg}); "
                "fix that line so it holds one complete JSON object"
            ) from exc
        if not isinstance(record, dict):
            raise LsllmError(
                f"{path} line {number} is not a JSON object; make each line an object of named fields"
            )
        if _SURROGATE_ESCAPE.search(line) and _has_surrogate(record):
            raise LsllmError(f"{path} line {number} {_SURROGATE_FIX}")
        records.append(record)
    return records


_SURROGATE_FIX = (
    "has a \\u escape for half of a UTF-16 surrogate pair, which is not a character; "
    "write the character itself or its complete pair of escapes"
)


def _load_json(text: str, where: str) -> Any:
    """json.loads, with the two limits of Python's parser (not JSON syntax errors) as LsllmErrors."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise LsllmError(f"{where} nests lists or objects too deeply to read; flatten that data") from None
    except ValueError as exc:  # Python refuses to convert an integer of more than 4300 digits
        digits = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300
        raise LsllmError(
            f"{where} holds a whole number of more than {digits} digits, too long to read; "
            "write it as a string"
        ) from exc


def _has_surrogate(value: Any) -> bool:
    """Whether a parsed JSON value holds a lone surrogate (from an escape like \\ud800) anywhere."""
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(_has_surrogate(key) or _has_surrogate(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    return False


def _read_parquet(path: str | os.PathLike) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check_file(path)
    try:
        table = pq.read_table(path)
        try:
            return table.to_pylist()
        except UnicodeDecodeError:
            problem = _not_utf8(table, path)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise LsllmError(
            f"cannot read {path} as Parquet ({first_line(exc)}); check that it is a Parquet file"
        ) from exc
    raise LsllmError(f"{problem}; re-write the file with UTF-8 strings")


def _not_utf8(table: Any, path: str | os.PathLike) -> str:
    """Where a Parquet table holds bytes that are not UTF-8: a column's name, or a row of a column."""
    for index in range(table.num_columns):
        try:
            name = table.field(index).name
        except UnicodeDecodeError:
            return f"the name of column {index + 1} of {path} is not UTF-8"
        column = table.column(index)
        try:
            column.to_pylist()
        except UnicodeDecodeError:
            low, high = 0, len(column)  # the bad row is in [low, high)
            while high - low > 1:
                middle = (low + high) // 2
                try:
                    column.slice(low, middle - low).to_pylist()
                    low = middle
                except UnicodeDecodeError:
                    high = middle
            return f"row {low + 1} of {path} has text that is not UTF-8 in column '{shown(name)}'"
    return f"{path} holds text that is not UTF-8"


def shown(name: Any, limit: int = 60) -> str:
    """A column name or label as it reads in a one-line message: plain if printable, else its repr."""
    text = str(name)
    text = text if text.isprintable() else repr(text)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


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


def _label_value(value: Any, row: int, path: str | os.PathLike) -> str | int | None:
    """Keep int and string labels as they are (strings stripped); empty, null and NaN mean no label."""
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
        f"row {row} of {path} has label {value!r:.60}, which is not a class name or integer; "
        "use one string or integer label per row"
    )


def _token_examples_from_records(
    path: str | os.PathLike, tokens_field: str, tags_field: str, require_labels: bool
) -> list[TokenExample]:
    records = read_records(path)
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
    lines = [(number, _conll_columns(line)) for number, line in enumerate(_lines(_read_text(path)), start=1)]
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
