"""Read tables (CSV, TSV, JSON, JSONL, Parquet) into rows, and text files into lines, with one-line errors
that name the file, the line and the fix."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lsllm.errors import LsllmError, first_line

TABLE_SUFFIXES = (".csv", ".json", ".jsonl", ".parquet", ".tsv")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # \uD800-\uDFFF: only valid as a pair


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


def _check_file(path: str | os.PathLike) -> None:
    """Fail early with a plain message for paths that cannot be a data file."""
    if not os.path.exists(path):
        raise LsllmError(f"file not found: {path}; check the path")
    if os.path.isdir(path):
        raise LsllmError(f"{path} is a directory, not a file; give the path of a data file inside it")


def read_text(path: str | os.PathLike) -> str:
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


def split_lines(text: str) -> list[str]:
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
    return _read_delimited(path, csv.reader(io.StringIO(read_text(path), newline=""), strict=True))


def _read_tsv(path: str | os.PathLike) -> list[dict]:
    """TSV has no quoting, so quotes in text (`it 's a "charming" movie`) are kept as written."""
    text = io.StringIO(read_text(path), newline="")
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
    text = read_text(path)
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
    return _parse_jsonl(read_text(path), path)


def _parse_jsonl(text: str, path: str | os.PathLike) -> list[dict]:
    """Parse one JSON object per line, skipping blank lines."""
    records = []
    for number, line in enumerate(split_lines(text), start=1):
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
