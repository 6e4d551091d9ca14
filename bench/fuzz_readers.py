"""Fuzz every data reader with mutated real-format files: each call must give a result or a one-line
LsllmError that names the file.

    python -m bench.fuzz_readers --cases 20000        # about 5 minutes on one core
    python -m bench.fuzz_readers --replay 1234        # rerun one case and show what each reader did

Every case starts from a valid seed file of one format (sequence tables: .jsonl, .json as a list and as
JSON lines, .csv, .tsv, .parquet; token data: CoNLL column files, .jsonl/.json/.parquet rows, and
prediction rows that mix word lists with raw texts), mutates it and hands it to every reader:
read_records, read_sequence_examples (labelled, unlabelled, text pairs), read_token_examples (labelled,
unlabelled), the path `lsllm train` and `lsllm eval` take (read_examples, the label set, label ids and
encoding, through TaskData) for both tasks, and lsllm.data.inputs.read_prediction_inputs for both tasks
followed by what `Classifier.predict` does before the model (word splitting and windows).

Mutations are byte-level (bit flips, truncation, deleted, duplicated and swapped lines, insertions of
quotes, delimiters, newlines, NUL, invalid UTF-8, BOMs, Unicode line separators, deep nesting, huge
numbers and huge fields, splices from other seeds) or value-level (a field's value replaced by null, a
number, NaN, a list, an object, an empty or whitespace string, a string with control characters; a key
dropped or renamed; a token or tag removed), so the parsers' checks and the checks after them both get
exercised. Case k draws from random.Random(f"{seed}:{k}"), so any case can be replayed alone.

A finding is any other exception, an LsllmError whose message is not one line or does not name the file,
a result that breaks the reader's contract (an empty text, a tag sequence that is not valid BIO, tokens
and tags of different lengths, a prediction input that predict would reject), or a call slower than
SLOW_SECONDS. Results go to bench/results/fuzz/results.json and README.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import logging
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import ROOT, command_line, git_commit, markdown_table

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one core: the machine is shared
os.environ.setdefault("RAYON_NUM_THREADS", "1")
RESULTS = ROOT / "bench" / "results" / "fuzz"
SLOW_SECONDS = 10.0
MAX_MESSAGE = 1000  # characters: a message may quote a value, not print a whole field
MAX_MUTATIONS = 4
HUGE = 200_000  # characters in a "huge field": past the csv module's default field limit (131072)

# --- seed files -----------------------------------------------------------------------------------------

SEQUENCE_ROWS = [
    {"text": "it 's a charming and often affecting journey . ", "hypothesis": "a journey", "label": "pos"},
    {"text": 'unflinchingly bleak, "desperate"', "hypothesis": "it is bleak", "label": "neg"},
    {"text": "two\nlines, café déjà vu", "hypothesis": "東京 😀 e\u0301", "label": "pos"},
    {"text": "1,000 U.S. dollars — O'Neil's", "hypothesis": "money", "label": "neg"},
]
TOKEN_ROWS = [
    {"tokens": ["EU", "rejects", "German", "call"], "tags": ["B-ORG", "O", "B-MISC", "O"]},
    {"tokens": ["Peter", "Blackburn"], "tags": ["I-PER", "I-PER"]},
    {"tokens": ["New", "York", "is", "big"], "tags": ["B-LOC", "E-LOC", "O", "O"]},
    {"tokens": ["東", "京", "😀", "café"], "tags": ["S-LOC", "U-LOC", "O", "O"]},
]
CONLL2003 = (
    "-DOCSTART- -X- -X- O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP I-MISC\ncall NN I-NP O\n"
    "\nPeter NNP B-NP I-PER\nBlackburn NNP I-NP I-PER\n\n-DOCSTART- -X- -X- O\n\nBRUSSELS NNP B-NP I-LOC\n"
    "1996-08-22 CD I-NP O\n"
)
WNUT = "@paulwalk\tO\nIt\tO\n's\tO\nthe\tO\nEmpire\tB-location\nState\tI-location\n\nStar\tB-creative-work\n"
IOBES = "New B-LOC\r\nYork E-LOC\r\nis O\r\nbig O\r\n\r\nParis S-LOC\r\n"
PREDICT_ROWS = [
    {"tokens": ["Angela", "Merkel", "visited", "Paris"]},
    {"text": "Angela  Merkel's visit to the U.S. (1,000 km) 😀 東京"},
]


@dataclass(frozen=True)
class Seed:
    name: str  # the file name the readers see, so its suffix picks the reader
    kind: str  # "sequence" or "token": the task whose rows it holds
    rows: list[dict] | None  # for value-level mutations (None: a CoNLL text)
    text: str | None = None


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


def _json(rows: list[dict]) -> bytes:
    return json.dumps(rows, ensure_ascii=False, indent=1).encode()


def _delimited(rows: list[dict], delimiter: str) -> bytes:
    buffer = io.StringIO(newline="")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if delimiter == "\t":  # TSV has no quoting (GLUE): fields are written as they are
        lines = ["\t".join(columns), *("\t".join(_cell(row.get(c)) for c in columns) for row in rows)]
        return ("\n".join(lines) + "\n").encode()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([_cell(row.get(c)) for c in columns] for row in rows)
    return buffer.getvalue().encode()


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _parquet(rows: list[dict]) -> bytes | None:
    """Rows as Parquet bytes, or None where pyarrow cannot type a column (mixed types)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pylist(rows)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None
    return buffer.getvalue()


WRITERS: dict[str, Callable[[list[dict]], bytes | None]] = {
    ".jsonl": _jsonl,
    ".json": _json,
    ".csv": lambda rows: _delimited(rows, ","),
    ".tsv": lambda rows: _delimited(rows, "\t"),
    ".parquet": _parquet,
}


def _tsv_rows(rows: list[dict]) -> list[dict]:
    return [{k: v.replace("\n", " ") if isinstance(v, str) else v for k, v in row.items()} for row in rows]


SEEDS = [
    Seed("train.jsonl", "sequence", SEQUENCE_ROWS),
    Seed("train.json", "sequence", SEQUENCE_ROWS),
    Seed("lines.json", "sequence", SEQUENCE_ROWS),  # a .json file of JSON lines
    Seed("train.csv", "sequence", SEQUENCE_ROWS),
    Seed("train.tsv", "sequence", _tsv_rows(SEQUENCE_ROWS)),
    Seed("train.parquet", "sequence", SEQUENCE_ROWS),
    Seed("conll2003.txt", "token", None, CONLL2003),
    Seed("wnut17.conll", "token", None, WNUT),
    Seed("iobes.bio", "token", None, IOBES),
    Seed("ner.jsonl", "token", TOKEN_ROWS),
    Seed("ner.json", "token", TOKEN_ROWS),
    Seed("ner.parquet", "token", [{**row, "tokens": row["tokens"]} for row in TOKEN_ROWS]),
    Seed("predict.jsonl", "token", PREDICT_ROWS),
]


def seed_bytes(seed: Seed, rows: list[dict] | None = None) -> bytes | None:
    if seed.text is not None and rows is None:
        return seed.text.encode()
    rows = seed.rows if rows is None else rows
    if seed.text is not None:  # CoNLL: rows back to columns (value mutations of a CoNLL file)
        return _conll(rows)
    if seed.name == "lines.json":
        return _jsonl(rows)
    return WRITERS[Path(seed.name).suffix](rows)


def _conll(rows: list[dict]) -> bytes:
    sentences = []
    for row in rows:
        tokens, tags = row.get("tokens"), row.get("tags")
        if not isinstance(tokens, list):
            tokens = [tokens]
        if not isinstance(tags, list):
            tags = [tags] * len(tokens)
        lines = [f"{_cell(w)} {_cell(t)}".strip() for w, t in zip(tokens, tags, strict=False)]
        sentences.append("\n".join(lines))
    return ("\n\n".join(sentences) + "\n").encode()


def conll_rows(text: str) -> list[dict]:
    rows, tokens, tags = [], [], []
    for line in [*text.splitlines(), ""]:
        columns = line.split()
        if columns and columns[0] != "-DOCSTART-":
            tokens.append(columns[0])
            tags.append(columns[-1])
        elif tokens:
            rows.append({"tokens": tokens, "tags": tags})
            tokens, tags = [], []
    return rows


# --- mutations ------------------------------------------------------------------------------------------

INTERESTING = [
    b'"',
    b"'",
    b"\t",
    b"\n",
    b"\r",
    b"\r\n",
    b"\x00",
    b"\xff",
    b"\xfe",
    b"\xc3",
    b"\xe2\x80",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b",",
    b";",
    b" ",
    b"  ",
    b"[",
    b"]",
    b"{",
    b"}",
    b":",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"null",
    b"true",
    b"NaN",
    b"-Infinity",
    b"1e999",
    b"-0",
    b"2.5",
    b"9" * 5000,
    b"[" * 3000,
    b'{"a":' * 3000,
    b"-DOCSTART-",
    b"-DOCSTART- O",
    b"B-",
    b"I-",
    b"E-X",
    b"O",
    b"B-PER",
    b"\xc2\xa0",
    b"\xe2\x80\xa8",
    b"\xe2\x80\xa9",
    b"\xc2\x85",
    b"\x0b",
    b"\x0c",
    b"\x1c",
    b"\x1e",
    b"\xe2\x80\x8b",
    b"\xe3\x80\x80",
    b"PAR1",
    "😀".encode(),
    "\u0301".encode(),
    "東".encode(),
    b'""',
    b'"\n"',
    b"\t\t",
]
WEIRD_VALUES: list[Any] = [
    None,
    0,
    1,
    -1,
    10**30,
    2.5,
    float("nan"),
    float("inf"),
    True,
    False,
    "",
    " ",
    "\t",
    "\n",
    "a\nb",
    "a\rb",
    "\u2028",
    "\x00",
    "\x85",
    "-DOCSTART-",
    "O",
    "B-",
    "I-PER",
    "B_PER",
    "x" * HUGE,
    [],
    [""],
    [" "],
    ["a", None],
    [1, 2],
    [["a"]],
    {},
    {"a": 1},
    ["O"],
    ["B-X", "I-Y"],
    ["E-X", "S-Y", "L-Z"],
]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _insert(rng: random.Random, data: bytes, chunk: bytes) -> bytes:
    at = rng.randint(0, len(data))
    return data[:at] + chunk + data[at:]


def _line_op(rng: random.Random, data: bytes, op: str) -> bytes:
    lines = _lines(data)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    if op == "dup":
        lines.insert(i, lines[j])
    elif op == "del" and len(lines) > 1:
        del lines[i]
    elif op == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


BYTE_MUTATIONS: dict[str, Callable[[random.Random, bytes, bytes], bytes]] = {
    "flip-bit": lambda rng, d, _: _flip(rng, d),
    "random-byte": lambda rng, d, _: _set_byte(rng, d, bytes([rng.randrange(256)])),
    "insert": lambda rng, d, _: _insert(rng, d, rng.choice(INTERESTING)),
    "insert-repeated": lambda rng, d, _: _insert(rng, d, rng.choice(INTERESTING[:20]) * rng.randint(2, 40)),
    "replace-byte": lambda rng, d, _: _set_byte(rng, d, rng.choice(INTERESTING)),
    "delete-range": lambda rng, d, _: _delete(rng, d),
    "truncate": lambda rng, d, _: d[: rng.randint(0, len(d))],
    "dup-line": lambda rng, d, _: _line_op(rng, d, "dup"),
    "del-line": lambda rng, d, _: _line_op(rng, d, "del"),
    "swap-lines": lambda rng, d, _: _line_op(rng, d, "swap"),
    "splice": lambda rng, d, other: _insert(
        rng, d, other[rng.randint(0, len(other)) :][: rng.randint(1, 80)]
    ),
    "repeat-range": lambda rng, d, _: _repeat(rng, d),
    "bom": lambda rng, d, _: b"\xef\xbb\xbf" + d,
    "huge-field": lambda rng, d, _: _insert(rng, d, _huge(rng)),
}
# Huge fields are slow to read many times over; the rest are drawn evenly.
BYTE_WEIGHTS = {name: 0.2 if name == "huge-field" else 1.0 for name in BYTE_MUTATIONS}


def _huge(rng: random.Random) -> bytes:
    chunk = rng.choice(["x", "ab ", "é", "a.", "東", "😀"])
    return (chunk * (HUGE // len(chunk))).encode()


def _flip(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]


def _set_byte(rng: random.Random, data: bytes, chunk: bytes) -> bytes:
    if not data:
        return chunk
    at = rng.randrange(len(data))
    return data[:at] + chunk + data[at + 1 :]


def _delete(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 16) :]


def _repeat(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    chunk = data[at : at + rng.randint(1, 64)]
    return data[:at] + chunk * rng.randint(2, 200) + data[at:]


def mutate_values(rng: random.Random, rows: list[dict]) -> tuple[list[dict], list[str]]:
    """Change values and keys of parsed rows (the file is then written normally)."""
    rows = json.loads(json.dumps(rows))  # a deep copy
    applied = []
    for _ in range(rng.randint(1, MAX_MUTATIONS)):
        if not rows:
            break
        row = rng.choice(rows)
        keys = list(row)
        op = rng.choice(["set", "set", "set", "drop-key", "rename-key", "add-key", "list-item", "drop-row"])
        if op == "set" and keys:
            key = rng.choice(keys)
            row[key] = rng.choice(WEIRD_VALUES)
            applied.append(f"set {key}={_short(row[key])}")
        elif op == "drop-key" and keys:
            key = rng.choice(keys)
            del row[key]
            applied.append(f"drop {key}")
        elif op == "rename-key" and keys:
            key = rng.choice(keys)
            new = rng.choice(["", " ", "label ", "a\nb", "tags", "text", "x"])
            row[new] = row.pop(key)
            applied.append(f"rename {key}->{new!r}")
        elif op == "add-key":
            row[rng.choice(["extra", "label", "tags", ""])] = rng.choice(WEIRD_VALUES)
            applied.append("add key")
        elif op == "list-item":
            lists = [key for key in keys if isinstance(row[key], list) and row[key]]
            if lists:
                key = rng.choice(lists)
                position = rng.randrange(len(row[key]))
                if rng.random() < 0.5:
                    del row[key][position]
                    applied.append(f"drop {key}[{position}]")
                else:
                    row[key][position] = rng.choice(WEIRD_VALUES)
                    applied.append(f"set {key}[{position}]={_short(row[key][position])}")
        elif op == "drop-row":
            rows.remove(row)
            applied.append("drop row")
    return rows, applied


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 20 else f"{text[:17]}..."


def make_case(seed_value: int, case: int) -> tuple[Seed, bytes, list[str]]:
    """The seed file and mutated bytes of case `case` (the same for the same seed and case)."""
    rng = random.Random(f"{seed_value}:{case}")
    seed = rng.choice(SEEDS)
    rows = seed.rows if seed.rows is not None else conll_rows(seed.text)
    if rng.random() < 0.3:
        mutated_rows, applied = mutate_values(rng, rows)
        data = seed_bytes(seed, mutated_rows)
        if data is not None:
            return seed, data, ["values: " + "; ".join(applied)]
    data = seed_bytes(seed)
    assert data is not None
    names = list(BYTE_MUTATIONS)
    applied = []
    for _ in range(rng.randint(1, MAX_MUTATIONS)):
        name = rng.choices(names, weights=[BYTE_WEIGHTS[n] for n in names])[0]
        other = seed_bytes(rng.choice([s for s in SEEDS if s.rows is not None or s.text]))
        data = BYTE_MUTATIONS[name](rng, data, other or b"")
        applied.append(name)
    return seed, data, applied


# --- targets --------------------------------------------------------------------------------------------


class ContractError(AssertionError):
    """A reader returned something its callers cannot use: `kind` says what, the message shows the value."""

    def __init__(self, kind: str, value: Any = None) -> None:
        super().__init__(kind if value is None else f"{kind}: {value!r:.60}")
        self.kind = kind


def _check(condition: bool, kind: str, value: Any = None) -> None:
    if not condition:
        raise ContractError(kind, value)


def _visible(text: Any) -> bool:
    return isinstance(text, str) and text.strip() != ""


def check_sequence_examples(examples: list, labelled: bool, pair: bool) -> None:
    from lsllm.data.examples import SequenceExample

    _check(isinstance(examples, list) and len(examples) > 0, "no examples and no error")
    for example in examples:
        _check(isinstance(example, SequenceExample), "not a SequenceExample", example)
        _check(_visible(example.text), "empty text", example.text)
        if pair:
            _check(_visible(example.text_pair), "empty text pair", example.text_pair)
        else:
            _check(example.text_pair is None, "text_pair without pair mode", example.text_pair)
        label = example.label
        _check(not labelled or label is not None, "missing label accepted")
        for item in label if isinstance(label, list) else [label]:  # a list: a multi-label row
            _check(item is None or isinstance(item, (str, int)), "label of another type", label)
            _check(not isinstance(item, str) or (item == item.strip() and item != ""), "blank label", label)
            _check(not isinstance(label, list) or item is not None, "missing label in a list", label)


def check_token_examples(examples: list, labelled: bool) -> None:
    from lsllm.data.examples import TokenExample

    _check(isinstance(examples, list) and len(examples) > 0, "no examples and no error")
    for example in examples:
        _check(isinstance(example, TokenExample), "not a TokenExample", example)
        tokens = example.tokens
        _check(isinstance(tokens, list) and len(tokens) > 0, "no tokens", tokens)
        for token in tokens:
            _check(_visible(token), "blank or non-string token", token)
        if example.tags is None:
            _check(not labelled, "missing tags accepted")
            continue
        _check(len(example.tags) == len(tokens), "tokens and tags differ in length")
        check_bio(example.tags)


def check_bio(tags: list[str]) -> None:
    previous = "O"
    for tag in tags:
        _check(isinstance(tag, str), "non-string tag", tag)
        _check(tag == "O" or (tag[:2] in ("B-", "I-") and len(tag) > 2), "a tag that is not BIO", tag)
        if tag.startswith("I-"):
            _check(previous[2:] == tag[2:], "an I- tag that continues nothing", (previous, tag))
        previous = tag


def check_prediction_inputs(inputs: list, task: str) -> None:
    from lsllm.data.words import word_spans

    _check(isinstance(inputs, list) and len(inputs) > 0, "no inputs and no error")
    for item in inputs:
        if task == "sequence":
            for text in item if isinstance(item, tuple) else (item,):
                _check(_visible(text), "empty text", text)
        elif isinstance(item, str):
            _check(len(word_spans(item)) > 0, "a text with no words", item)
        else:
            _check(isinstance(item, list) and len(item) > 0, "not a non-empty word list", item)
            for word in item:
                _check(_visible(word), "blank or non-string word", word)


class Harness:
    """The readers under test, with the configs, label sets and tokenizer the run paths need."""

    def __init__(self, workdir: Path) -> None:
        from lsllm.config import TrainConfig
        from lsllm.data.encoding import Encoder
        from lsllm.data.labels import LabelMap

        self.workdir = workdir
        tokenizer = byte_level_tokenizer()
        self.encoder = lambda: Encoder(tokenizer, 16)  # short: long inputs are cut into windows
        self.configs = {
            "sequence": TrainConfig(task="sequence", max_length=16),
            "pair": TrainConfig(
                task="sequence", text_field=["text", "hypothesis"], text_pair=True, max_length=16
            ),
            "token": TrainConfig(task="token", max_length=16),
        }
        # The label sets of the clean seeds: a mutated file is then read as dev data is.
        self.clean_labels = {
            "sequence": LabelMap.from_labels([row["label"] for row in SEQUENCE_ROWS]),
            "token": LabelMap.for_tags([["O", "B-ORG", "B-MISC", "B-PER", "B-LOC", "B-location"]]),
        }
        self.clean_labels["pair"] = self.clean_labels["sequence"]

    def targets(self) -> dict[str, Callable[[str], Any]]:
        from lsllm.data.examples import read_sequence_examples, read_token_examples
        from lsllm.data.tables import read_records

        def sequence(labelled: bool, pair: bool) -> Callable[[str], Any]:
            def run(path: str) -> None:
                fields = ("text", "hypothesis") if pair else ("text",)
                examples = read_sequence_examples(path, fields, pair=pair, require_labels=labelled)
                check_sequence_examples(examples, labelled, pair)

            return run

        def token(labelled: bool) -> Callable[[str], Any]:
            def run(path: str) -> None:
                check_token_examples(read_token_examples(path, require_labels=labelled), labelled)

            return run

        def records(path: str) -> None:
            rows = read_records(path)
            _check(len(rows) > 0 and all(isinstance(row, dict) for row in rows), "rows are not dicts")

        return {
            "read_records": records,
            "read_sequence_examples": sequence(True, False),
            "read_sequence_examples(unlabelled)": sequence(False, False),
            "read_sequence_examples(pair)": sequence(True, True),
            "read_token_examples": token(True),
            "read_token_examples(unlabelled)": token(False),
            "TaskData train+eval (sequence)": lambda path: self.run_task("sequence", path),
            "TaskData train+eval (pair)": lambda path: self.run_task("pair", path),
            "TaskData train+eval (token)": lambda path: self.run_task("token", path),
            "read_prediction_inputs (sequence)": lambda path: self.predict_inputs("sequence", path),
            "read_prediction_inputs (token)": lambda path: self.predict_inputs("token", path),
        }

    def run_task(self, name: str, path: str) -> None:
        """What `lsllm train` does with a training file, and `lsllm eval` with a dev file."""
        from lsllm.data.task import TaskData, label_map_for, read_examples
        from lsllm.errors import LsllmError

        config = self.configs[name]
        examples = read_examples(config, path)
        if config.task == "sequence":
            check_sequence_examples(examples, True, config.text_pair)
        else:
            check_token_examples(examples, True)
        data = TaskData(config, label_map_for(config, examples), self.encoder())
        features = data.encode(examples, path)
        _check(len(features) == len(examples), "encode lost examples")
        # As a dev file against the clean training labels: unknown labels are an LsllmError.
        dev = TaskData(config, self.clean_labels[name], self.encoder())
        dev.encode(dev.read(path), path)
        # The clean seed's labels against the mutated file's label set (names shown in the message).
        # An unknown label: its message lists the mutated file's label names.
        try:
            data.labels.index("not-a-label", path)
        except LsllmError as error:
            problem = classify(error, path)
            _check(problem is None, f"unknown-label error: {problem}", str(error))
        else:
            raise ContractError("an unknown label was found")

    def predict_inputs(self, task: str, path: str) -> None:
        """What `lsllm predict --input FILE` does before the model runs."""
        from lsllm.data.encoding import join_words
        from lsllm.data.examples import SequenceExample
        from lsllm.data.inputs import read_prediction_inputs
        from lsllm.data.task import TaskData
        from lsllm.data.words import word_spans

        data = TaskData(self.configs[task], self.clean_labels[task], self.encoder())
        inputs = read_prediction_inputs(data, path)
        check_prediction_inputs(inputs, task)
        if task == "sequence":
            examples = [SequenceExample(*x) if isinstance(x, tuple) else SequenceExample(x) for x in inputs]
            data.encode(examples, path, with_labels=False)
            return
        for item in inputs:  # Classifier._predict_words up to the model
            if isinstance(item, str):
                text, spans = item, word_spans(item)
            else:
                text, spans = join_words(list(item))
            windows = data.encoder.windows(text, spans, causal=False)
            owners = Counter(word for window in windows for word, _ in window.owned_words())
            _check(all(count == 1 for count in owners.values()), "a word predicted by two windows")


def byte_level_tokenizer():
    """A small byte-level BPE tokenizer (as tests/tiny.py builds): every string has tokens and offsets."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [row["text"] for row in SEQUENCE_ROWS] + [" ".join(row["tokens"]) for row in TOKEN_ROWS]
    tokenizer.train_from_iterator(corpus * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>", pad_token="<pad>")


# --- the run --------------------------------------------------------------------------------------------


def classify(error: BaseException, path: str) -> str | None:
    """None if `error` is an acceptable outcome, else what is wrong with it."""
    from lsllm.errors import LsllmError

    if isinstance(error, ContractError):
        return f"contract: {error.kind}"
    if not isinstance(error, LsllmError):
        return f"{type(error).__name__}"
    message = str(error)
    if len(message.splitlines()) != 1 or message != message.strip():
        return "LsllmError message is not one line"
    if Path(path).name not in message:
        return "LsllmError message does not name the file"
    if len(message) > MAX_MESSAGE:
        return f"LsllmError message longer than {MAX_MESSAGE} characters"
    return None


def where(error: BaseException) -> str:
    """The innermost lsllm (else any) frame of the error's traceback: file:line function."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/lsllm/" in f.filename.replace("\\", "/")] or frames
    frame = ours[-1] if ours else None
    if frame is None:
        return "?"
    return f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"


def fuzz(cases: int, seed: int = 0, workdir: Path | None = None, start: int = 0, log=None) -> dict:
    """Run cases start..start+cases-1; counts per reader and format, and findings grouped by cause."""
    logging.getLogger("lsllm").setLevel(logging.ERROR)  # truncation warnings, one per mutated file
    with tempfile.TemporaryDirectory(prefix="lsllm-fuzz-") as scratch:
        workdir = Path(workdir or scratch)
        harness = Harness(workdir)
        targets = harness.targets()
        tried: Counter = Counter()
        outcomes: Counter = Counter()
        findings: dict[tuple[str, str, str], dict] = {}
        slowest = (0.0, "", -1)
        started = time.perf_counter()
        for case in range(start, start + cases):
            seed_file, data, applied = make_case(seed, case)
            path = workdir / seed_file.name
            path.write_bytes(data)
            for name, target in targets.items():
                key = f"{name} | {seed_file.name}"
                tried[key] += 1
                began = time.perf_counter()
                try:
                    target(str(path))
                    problem, outcome = None, "result"
                except BaseException as error:
                    if isinstance(error, KeyboardInterrupt):
                        raise
                    problem, outcome = classify(error, str(path)), "LsllmError"
                    if problem:
                        group = (name, problem, where(error))
                        finding = findings.setdefault(
                            group,
                            {
                                "reader": name,
                                "problem": problem,
                                "where": group[2],
                                "count": 0,
                                "first_case": case,
                                "format": seed_file.name,
                                "mutations": applied,
                                "message": f"{type(error).__name__}: {str(error)[:300]!r}",
                                "input_head": data[:200].decode("utf-8", "backslashreplace"),
                            },
                        )
                        finding["count"] += 1
                        outcome = "finding"
                seconds = time.perf_counter() - began
                outcomes[f"{key} | {outcome}"] += 1
                if seconds > slowest[0]:
                    slowest = (seconds, key, case)
                if seconds > SLOW_SECONDS:
                    group = (name, "slow", seed_file.name)
                    finding = findings.setdefault(
                        group,
                        {
                            "reader": name,
                            "problem": f"slower than {SLOW_SECONDS} s",
                            "where": "",
                            "count": 0,
                            "first_case": case,
                            "format": seed_file.name,
                            "mutations": applied,
                        },
                    )
                    finding["count"] += 1
            if log and (case - start + 1) % 1000 == 0:
                print(f"{case - start + 1} cases, {len(findings)} findings", file=log, flush=True)
        return {
            "cases": cases,
            "seed": seed,
            "first_case": start,
            "seconds": round(time.perf_counter() - started, 1),
            "calls": _table(tried, outcomes),
            "slowest_call": {"seconds": round(slowest[0], 3), "call": slowest[1], "case": slowest[2]},
            "findings": sorted(findings.values(), key=lambda f: (f["reader"], f["problem"])),
        }


def _table(tried: Counter, outcomes: Counter) -> list[dict]:
    rows = []
    for key in sorted(tried):
        reader, fmt = key.split(" | ")
        rows.append(
            {
                "reader": reader,
                "format": fmt,
                "cases": tried[key],
                "result": outcomes[f"{key} | result"],
                "LsllmError": outcomes[f"{key} | LsllmError"],
                "findings": outcomes[f"{key} | finding"],
            }
        )
    return rows


def versions() -> dict:
    import pyarrow
    import regex
    import tokenizers

    # Code under test that differs from that commit (the run is then of the working tree, not the commit).
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "src", "bench/fuzz_readers.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    return {
        "uncommitted": [line[3:] for line in changed.splitlines()],
        "python": platform.python_version(),
        "lsllm": metadata.version("lsllm"),
        "pyarrow": pyarrow.__version__,
        "regex": regex.__version__,
        "tokenizers": tokenizers.__version__,
        "commit": git_commit(),
    }


def readme(results: dict) -> str:
    keys = ("cases", "result", "LsllmError", "findings")
    per_reader: dict[str, Counter] = {}
    for row in results["calls"]:
        counts = per_reader.setdefault(row["reader"], Counter())
        counts.update({k: row[k] for k in keys})
    lines = [
        "# Reader fuzzing",
        "",
        f"`{results['command']}`: {results['cases']} mutated files (seed {results['seed']}), each given to",
        f"every reader, in {results['seconds']} s. Written by `bench/fuzz_readers.py`; per-format counts,",
        "versions and any findings are in [results.json](results.json).",
        "",
    ]
    header = ["reader", "cases", "result", "LsllmError (one line, names the file)", "findings"]
    rows = [[reader, *(str(counts[k]) for k in keys)] for reader, counts in per_reader.items()]
    lines += [*markdown_table(header, rows), "", f"Formats: {', '.join(s.name for s in SEEDS)}.", ""]
    if results["findings"]:
        header = ["finding", "reader", "where", "count", "first case"]
        fields = ("problem", "reader", "where", "count", "first_case")
        lines += markdown_table(header, [[str(f[k]) for k in fields] for f in results["findings"]])
    else:
        lines.append("No findings: every call gave a result or a one-line LsllmError naming the file.")
    if results.get("history"):
        lines += ["", "## Found and fixed", "", *results["history"]]
    return "\n".join(lines) + "\n"


# What the first run (5,000 cases, before-fixes/) and the property tests in tests/test_data_properties.py
# found; each fix has a regression test there.
HISTORY = [
    "The first run, before any fix, is in [before-fixes/](before-fixes/README.md) (5,000 cases). It and",
    "the property tests found, all fixed in `src/lsllm/data/` and `src/lsllm/data/inputs.py`:",
    "",
    "- JSON nested thousands deep: `RecursionError`; a 5,000-digit number: `ValueError` (Python's",
    "  int-conversion limit). Both are now one-line errors naming the file and line.",
    "- A `\\ud800`-style escape (half a surrogate pair) in JSON was read into the text, then crashed the",
    "  tokenizer with a `TypeError` (or writing labels.json). Now rejected with the file and line.",
    "- Parquet: pyarrow's error text ends in a newline (a two-line message); a string column with invalid",
    "  UTF-8 raised `UnicodeDecodeError`, and so (found by the first full run, case 18004) did a column",
    "  name with invalid UTF-8. Now the first line of pyarrow's error, or the row and column.",
    "- Column names and training labels with a newline (a quoted CSV header, a JSON key) broke messages",
    "  over lines; 500 columns or a 100 kB tag or label were printed whole. Now shown as repr, cut short.",
    "- Token rows with an empty or all-space word were accepted: the word gets no token, so its tag was",
    "  silently dropped in training and reported as truncation. Now rejected with the row and position.",
    "- `predict --input` rows with an empty text, `[]`, or non-string words were accepted and failed later",
    "  in predict (`TypeError`, or an error without the file's name). Now rejected with the row.",
    "- `predict --input` on a token run: `.JSONL` (upper case) was not read as a table.",
    "- A long token input in many windows: each window held a list with an entry for every word of the",
    "  input (words x windows memory: a 200,000-word text in 16-token windows ran out of 20 GB). Windows",
    "  now hold only their own words (`WindowWords`), and `WordAlignment.owned_words()` visits them alone.",
    "- Property tests: CoNLL columns were split at any Unicode space, so `10\\u00a0000 O` (a no-break",
    "  space) lost `000`; a file with CR-only line endings was one line; a window could lie inside the one",
    "  before it (wasted work);",
    "  a CSV/TSV field over 131,072 characters (a long document) was refused as an unbalanced quote.",
]


def replay(seed: int, case: int) -> None:
    seed_file, data, applied = make_case(seed, case)
    print(f"case {case}: {seed_file.name}, mutations {applied}\n{data[:500]!r}")
    with tempfile.TemporaryDirectory(prefix="lsllm-fuzz-") as scratch:
        path = Path(scratch) / seed_file.name
        path.write_bytes(data)
        for name, target in Harness(Path(scratch)).targets().items():
            try:
                target(str(path))
                print(f"{name}: result")
            except Exception as error:
                verdict = classify(error, str(path)) or "ok"
                print(f"{name}: {verdict}: {type(error).__name__}: {str(error)[:300]!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=20000, help="mutated files to try")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for results.json and README.md")
    parser.add_argument("--replay", type=int, default=None, help="rerun one case and print each outcome")
    parser.add_argument(
        "--memory-gb", type=float, default=4.0, help="address-space cap: a runaway allocation is a finding"
    )
    args = parser.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_AS, (int(args.memory_gb * 2**30),) * 2)
    if args.replay is not None:
        replay(args.seed, args.replay)
        return
    from lsllm.atomic import write_json_atomic, write_text_atomic

    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    results = fuzz(args.cases, args.seed, log=sys.stderr)
    results = {
        "command": command_line("bench.fuzz_readers", argv),
        "started": started,
        **results,
        "versions": versions(),
    }
    if (args.results / "before-fixes" / "README.md").exists():
        results["history"] = HISTORY
    write_json_atomic(args.results / "results.json", results)
    write_text_atomic(args.results / "README.md", readme(results))
    print(readme(results))
    if results["findings"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
