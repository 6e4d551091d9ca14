"""Files in and out of `lsllm predict`."""

from __future__ import annotations

import json
from pathlib import Path

from lsllm.atomic import write_text_atomic
from lsllm.data.readers import read_records
from lsllm.data.task import TaskData
from lsllm.errors import LsllmError

TABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


def read_prediction_inputs(data: TaskData, path: str) -> list:
    """Texts (or text pairs) for a sequence run; raw texts or word lists for a token run."""
    if data.config.task == "sequence":
        examples = data.read(path, require_labels=False)
        return [(e.text, e.text_pair) if e.text_pair is not None else e.text for e in examples]
    if not path.endswith(TABLE_SUFFIXES):
        return [e.tokens for e in data.read(path, require_labels=False)]
    tokens_field, text_field = data.config.tokens_field, data.config.text_field[0]
    inputs = []
    for number, row in enumerate(read_records(path), start=1):
        if isinstance(row.get(tokens_field), list):
            inputs.append(row[tokens_field])
        elif isinstance(row.get(text_field), str):
            inputs.append(row[text_field])
        else:
            raise LsllmError(
                f"row {number} of {path} has neither '{tokens_field}' (a list of words) "
                f"nor '{text_field}' (a text); "
                "give one of them"
            )
    return inputs


def write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
