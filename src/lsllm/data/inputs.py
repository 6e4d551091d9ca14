"""The inputs of `lsllm predict --input FILE`: texts, text pairs, raw texts or word lists, checked."""

from __future__ import annotations

from lsllm.data.examples import check_words
from lsllm.data.sources import Source, holds_rows, read_rows, source_name
from lsllm.data.tables import TABLE_SUFFIXES
from lsllm.data.task import TaskData
from lsllm.data.words import word_spans
from lsllm.errors import LsllmError


def read_prediction_inputs(data: TaskData, source: Source) -> list:
    """Texts (or text pairs) for a sequence run; raw texts or word lists for a token run, from a file or a
    dataset. Every input has a word to tag: an empty one is reported with its row here, not later without
    the file's name."""
    if data.config.task != "token":
        examples = data.read(source, require_labels=False)
        return [(e.text, e.text_pair) if e.text_pair is not None else e.text for e in examples]
    if not holds_rows(source, TABLE_SUFFIXES):
        return [e.tokens for e in data.read(source, require_labels=False)]
    tokens_field, text_field = data.config.tokens_field, data.config.text_field[0]
    name = source_name(source)
    inputs = []
    for number, row in enumerate(read_rows(source, name), start=1):
        where = f"row {number} of {name}"
        if isinstance(row.get(tokens_field), list):
            words = row[tokens_field]
            if not words or not all(isinstance(word, str) for word in words):
                raise LsllmError(
                    f"{where} needs a non-empty list of strings in '{tokens_field}' "
                    f"(found {words!r:.60}); fix that row"
                )
            check_words(words, tokens_field, where)
            inputs.append(words)
        elif isinstance(row.get(text_field), str):
            if not word_spans(row[text_field]):
                raise LsllmError(
                    f"{where} has no words in '{text_field}' (found {row[text_field]!r:.60}); "
                    "give it text or remove the row"
                )
            inputs.append(row[text_field])
        else:
            raise LsllmError(
                f"{where} has neither '{tokens_field}' (a list of words) nor '{text_field}' (a text); "
                "give one of them"
            )
    return inputs
