"""Bad input, searched for rather than listed: properties of the readers, tag normalisation, word splitting,
sub-word alignment and window stitching over hypothesis-generated inputs; the reader fuzzer's core
(bench/fuzz_readers.py) on a few hundred mutated files; and one regression test per bug they found.

Every @settings is derandomized, so CI runs the same examples each time.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import tempfile
import tracemalloc
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import regex
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from seqeval.metrics.sequence_labeling import get_entities
from tokenizers import processors

from lsllm.config import TrainConfig
from lsllm.data.encoding import IGNORE_INDEX, Encoder, join_words
from lsllm.data.examples import (
    SequenceExample,
    TokenExample,
    normalize_tags,
    read_sequence_examples,
    read_token_examples,
)
from lsllm.data.inputs import read_prediction_inputs
from lsllm.data.labels import LabelMap
from lsllm.data.tables import read_records
from lsllm.data.task import TaskData
from lsllm.data.windows import OVERLAP, best_windows, cut_windows
from lsllm.data.words import word_spans
from lsllm.errors import LsllmError
from tests.tiny import byte_level_tokenizer

FAST = settings(max_examples=200, deadline=None, derandomize=True)
FILES = settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@cache
def tokenizer():
    return byte_level_tokenizer()


@cache
def tokenizer_with_specials():
    """The tiny tokenizer, adding <eos> before and after every text as some models' BOS/EOS do."""
    wrapped = byte_level_tokenizer()
    wrapped._tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=True),
            processors.TemplateProcessing(single="<eos> $A <eos>", special_tokens=[("<eos>", 1)]),
        ]
    )
    return wrapped


def one_line(error: LsllmError) -> str:
    message = str(error)
    assert len(message.splitlines()) == 1 and message == message.strip(), repr(message)
    return message


# --- strategies -----------------------------------------------------------------------------------------

# Characters that make text hard: combining marks, CJK and kana, emoji with modifiers and joiners, RTL,
# zero-width and other Unicode spaces, line separators, quotes, delimiters, NUL.
TRICKY = (
    "e\u0301\u0308\u20dd東京中文ひらカタ한😀👍🏽👩\u200d💻🇩🇪\u0627\u05d0\u0915\u093f"
    "\u200b\u200c\u200d\ufeff\u00a0\u2009\u3000\u2028\u2029\u0085\x0b\x0c\x1c"
    "'\u2019.-,;:\"\\/()[]{}#@$%&*+=<>|~^`!?_\t \n\r\x00"
)
chars = st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(TRICKY))
any_text = st.text(chars, max_size=40)
visible_text = any_text.filter(lambda text: text.strip() != "")
# A single-line text for TSV (which has no quoting) and CoNLL: no tab, CR or LF inside.
line_text = st.text(chars.filter(lambda c: c not in "\t\r\n"), min_size=1, max_size=30).filter(str.strip)
label_text = st.text(chars, min_size=1, max_size=12).map(str.strip).filter(bool)
line_label = label_text.filter(lambda label: not any(c in label for c in "\t\r\n"))
# A word of pre-split data: anything visible (JSON rows may keep spaces inside a word).
word = st.text(chars, min_size=1, max_size=12).filter(str.strip)
# A word of a CoNLL file: no space or tab (the column separators) or line break, and no leading
# whitespace (the line is stripped); other spaces (U+00A0) may sit inside or at its end.
conll_word = word.filter(
    lambda w: not any(c in " \t\r\n" for c in w) and not w[0].isspace() and w != "-DOCSTART-"
)
entity_type = st.one_of(
    st.sampled_from(["PER", "LOC", "ORG", "MISC", "creative-work"]),
    st.text(chars.filter(lambda c: not c.isspace()), min_size=1, max_size=6),
)
scheme_tag = st.one_of(
    st.just("O"), st.builds(lambda p, t: f"{p}-{t}", st.sampled_from("BIESLU"), entity_type)
)


# --- readers: round trips -------------------------------------------------------------------------------


def write_table(folder: Path, suffix: str, rows: list[dict]) -> Path:
    """Rows written the way a user's tool would: json.dumps, csv.writer, TSV joined by tabs, pyarrow."""
    path = folder / f"data{suffix}"
    columns = list(rows[0])
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    elif suffix == ".csv":
        buffer = io.StringIO(newline="")
        csv.writer(buffer).writerows([columns, *([str(r[c]) for c in columns] for r in rows)])
        path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    elif suffix == ".tsv":
        lines = ["\t".join(columns), *("\t".join(str(r[c]) for c in columns) for r in rows)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def sequence_rows(suffix: str) -> st.SearchStrategy:
    """Rows with a text, a second text and a label; all labels strings or all integers (Parquet types a
    column)."""
    text = line_text if suffix == ".tsv" else visible_text
    string_labels = line_label if suffix == ".tsv" else label_text
    return st.sampled_from([string_labels, st.integers(-(2**62), 2**62)]).flatmap(
        lambda labels: st.lists(
            st.fixed_dictionaries({"text": text, "other": text, "label": labels}), min_size=1, max_size=6
        )
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".tsv", ".parquet"])
@FILES
@given(data=st.data())
def test_sequence_tables_round_trip(suffix, data):
    rows = data.draw(sequence_rows(suffix))
    with tempfile.TemporaryDirectory() as folder:
        path = write_table(Path(folder), suffix, rows)
        read = read_sequence_examples(path)
        pairs = read_sequence_examples(path, ("text", "other"), pair=True)
        unlabelled = read_sequence_examples(path, ("text",), label_field="absent", require_labels=False)
    typed = suffix in (".jsonl", ".json", ".parquet")  # CSV and TSV fields are strings
    labels = [r["label"] if typed else str(r["label"]) for r in rows]
    assert read == [SequenceExample(r["text"], None, label) for r, label in zip(rows, labels, strict=True)]
    assert pairs == [SequenceExample(r["text"], r["other"], x) for r, x in zip(rows, labels, strict=True)]
    assert unlabelled == [SequenceExample(r["text"]) for r in rows]


token_rows = st.lists(
    st.integers(1, 8).flatmap(
        lambda n: st.fixed_dictionaries(
            {
                "tokens": st.lists(word, min_size=n, max_size=n),
                "tags": st.lists(scheme_tag, min_size=n, max_size=n),
            }
        )
    ),
    min_size=1,
    max_size=5,
)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
@FILES
@given(rows=token_rows)
def test_token_records_round_trip(suffix, rows):
    with tempfile.TemporaryDirectory() as folder:
        path = write_table(Path(folder), suffix, rows)
        read = read_token_examples(path)
        unlabelled = read_token_examples(path, tags_field="absent", require_labels=False)
    assert read == [TokenExample(r["tokens"], normalize_tags(r["tags"])) for r in rows]
    assert unlabelled == [TokenExample(r["tokens"]) for r in rows]


@FILES
@given(
    sentences=st.lists(
        st.lists(st.tuples(conll_word, scheme_tag, st.sampled_from([" ", "\t", "  ", " \t"])), min_size=1),
        min_size=1,
        max_size=5,
    ),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    docstart=st.booleans(),
)
def test_conll_files_round_trip(sentences, newline, docstart):
    blocks = ["\n".join(f"{w}{gap}NN{gap}{t}" for w, t, gap in sentence) for sentence in sentences]
    text = ("-DOCSTART- -X- O\n\n" if docstart else "") + "\n\n".join(blocks) + "\n"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.conll"
        path.write_bytes(text.replace("\n", newline).encode())
        read = read_token_examples(path)
    expected = [TokenExample([w for w, _, _ in s], normalize_tags([t for _, t, _ in s])) for s in sentences]
    assert read == expected


# --- readers: arbitrary input gives a result or a one-line LsllmError -----------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), any_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)),
    max_leaves=12,
)
field_names = st.sampled_from(["text", "label", "tokens", "tags", "other", "", "text "])
json_rows = st.lists(st.dictionaries(field_names, json_values, max_size=4), min_size=0, max_size=4)


def read_everything(path: Path) -> None:
    """Every reader on one file: each must return or raise a one-line LsllmError naming the file."""
    calls = [
        lambda: read_sequence_examples(path),
        lambda: read_sequence_examples(path, require_labels=False),
        lambda: read_sequence_examples(path, ("text", "other"), pair=True),
        lambda: read_token_examples(path),
        lambda: read_token_examples(path, require_labels=False),
        lambda: read_prediction_inputs(token_data(), str(path)),
    ]
    for call in calls:
        try:
            call()
        except LsllmError as error:
            assert path.name in one_line(error)


@cache
def token_data() -> TaskData:
    return TaskData(TrainConfig(task="token"), LabelMap.for_tags([["B-PER"]]), Encoder(tokenizer(), 16))


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".tsv"])
@FILES
@given(rows=json_rows)
def test_arbitrary_rows_give_a_result_or_a_one_line_error(suffix, rows):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        if suffix in (".csv", ".tsv"):
            columns = list(dict.fromkeys(k for r in rows for k in r)) or ["text"]
            buffer = io.StringIO(newline="")
            writer = csv.writer(buffer, delimiter="," if suffix == ".csv" else "\t")
            writer.writerows([columns, *([str(r.get(c, "")) for c in columns] for r in rows)])
            path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
        else:
            write = "".join(json.dumps(r) + "\n" for r in rows) if suffix == ".jsonl" else json.dumps(rows)
            path.write_text(write, encoding="utf-8")
        read_everything(path)


@FILES
@given(content=st.binary(max_size=200), suffix=st.sampled_from([".jsonl", ".json", ".csv", ".tsv", ".txt"]))
def test_arbitrary_bytes_give_a_result_or_a_one_line_error(content, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        read_everything(path)


# One type per column (Arrow types a column), good and bad values mixed: blank texts, missing labels, blank
# words, unknown tag forms, word and tag lists of different lengths.
maybe_blank_text = st.one_of(visible_text, st.sampled_from(["", "  ", None]))
column_values = {
    "text": maybe_blank_text,
    "other": maybe_blank_text,
    "tokens": st.one_of(st.none(), st.lists(st.one_of(word, st.sampled_from(["", " "])), max_size=4)),
    "tags": st.one_of(st.none(), st.lists(st.one_of(scheme_tag, st.just("B_X")), max_size=4)),
}
label_kinds = [
    st.one_of(label_text, st.sampled_from(["", " ", None])),
    st.one_of(st.integers(-9, 9), st.none()),
]


@st.composite
def typed_rows(draw) -> list[dict]:
    names = [*column_values, "label"]
    columns = draw(st.lists(st.sampled_from(names), min_size=1, max_size=5, unique=True))
    kinds = {**column_values, "label": draw(st.sampled_from(label_kinds))}  # strings or integers
    values = {column: kinds[column] for column in columns}
    return draw(st.lists(st.fixed_dictionaries(values), min_size=1, max_size=4))


def outcome(read) -> object:
    try:
        return read()
    except LsllmError as error:
        return one_line(error)


@FILES
@given(rows=typed_rows())
def test_a_dataset_reads_as_the_same_rows_in_a_file_do(rows):
    import datasets

    try:
        dataset = datasets.Dataset.from_list(rows)
    except (pa.ArrowException, TypeError, ValueError):
        assume(False)  # rows Arrow cannot hold as one table are no dataset
    readers = [
        lambda source, **name: read_sequence_examples(source, **name),
        lambda source, **name: read_sequence_examples(source, ("text", "other"), pair=True, **name),
        lambda source, **name: read_sequence_examples(source, require_labels=False, **name),
        lambda source, **name: read_token_examples(source, **name),
        lambda source, **name: read_token_examples(source, require_labels=False, **name),
    ]
    with tempfile.TemporaryDirectory() as folder:
        path = write_table(Path(folder), ".jsonl", rows)
        for read in readers:
            from_file = outcome(lambda read=read: read(path))
            from_dataset = outcome(lambda read=read: read(dataset, name="the train dataset"))
            if isinstance(from_file, str):
                from_file = from_file.replace(str(path), "the train dataset")
            assert from_dataset == from_file


# --- tag normalisation ----------------------------------------------------------------------------------


def assert_valid_bio(tags: list[str]) -> None:
    previous = "O"
    for tag in tags:
        assert tag == "O" or tag[:2] in ("B-", "I-")
        if tag.startswith("I-"):
            assert previous != "O" and previous[2:] == tag[2:], (previous, tag)
        previous = tag


@FAST
@given(tags=st.lists(scheme_tag, max_size=20))
def test_normalized_tags_are_valid_bio_idempotent_and_keep_types(tags):
    bio = normalize_tags(tags)
    assert_valid_bio(bio)
    assert normalize_tags(bio) == bio
    assert [t == "O" for t in bio] == [t == "O" for t in tags]
    assert [t[2:] for t in bio] == [t[2:] for t in tags]


# Entities as (type, length) runs between O runs; written in IOBES, BILOU and IOB1 from the same spans.
entity_runs = st.lists(st.tuples(st.one_of(st.just(None), entity_type), st.integers(1, 4)), max_size=8)


def spans_of(runs) -> tuple[list[tuple[str | None, int]], list[tuple[str, int, int]]]:
    position, spans = 0, []
    for kind, length in runs:
        if kind is not None:
            spans.append((kind, position, position + length - 1))
        position += length
    return runs, spans


def iobes(runs, single="S", last="E") -> list[str]:
    tags = []
    for kind, length in runs:
        if kind is None:
            tags += ["O"] * length
        elif length == 1:
            tags.append(f"{single}-{kind}")
        else:
            tags += [f"B-{kind}", *[f"I-{kind}"] * (length - 2), f"{last}-{kind}"]
    return tags


def iob1(runs) -> list[str]:
    tags, previous = [], None
    for kind, length in runs:
        if kind is None:
            tags += ["O"] * length
        else:
            first = "B" if kind == previous else "I"  # B- only where an entity follows one of its type
            tags += [f"{first}-{kind}", *[f"I-{kind}"] * (length - 1)]
        previous = kind
    return tags


@FAST
@given(runs=entity_runs)
def test_entity_spans_survive_every_scheme(runs):
    _, spans = spans_of(runs)
    bio = iobes(runs, "B", "I")
    assert normalize_tags(bio) == bio  # valid BIO is left alone
    written = iobes(runs)
    assert get_entities(written) == spans == get_entities(bio)  # the IOBES tags as written
    for tags in (written, iobes(runs, "U", "L"), iob1(runs)):
        bio = normalize_tags(tags)
        assert_valid_bio(bio)
        assert get_entities(bio) == spans


# --- word splitting -------------------------------------------------------------------------------------

_SEPARATOR = regex.compile(r"[\s\p{Cc}\p{Cf}]")  # what words.py says only separates words


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(text=st.one_of(any_text, st.text(st.sampled_from(TRICKY), max_size=40)))
def test_word_spans_cover_every_visible_character_and_nothing_else(text):
    spans = word_spans(text)
    covered = [False] * len(text)
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end <= len(text)  # sorted, non-overlapping, inside, non-empty
        piece = text[start:end]
        assert piece and not any(c.isspace() for c in piece), (text, piece)
        assert not _SEPARATOR.match(piece[0])
        covered[start:end] = [True] * (end - start)
        previous_end = end
    # Uncovered: exactly whitespace and invisible control/format characters (and nothing visible).
    for char, hit in zip(text, covered, strict=True):
        assert hit or _SEPARATOR.match(char), (text, char)
    assert word_spans(text) == spans  # deterministic


@FAST
@given(text=st.text(st.sampled_from("東京中文ひらカタ"), min_size=1, max_size=20))
def test_every_cjk_character_is_a_word(text):
    assert word_spans(text) == [(i, i + 1) for i in range(len(text))]


# --- sub-word alignment ---------------------------------------------------------------------------------

# Words without whitespace inside, so a pre-split sentence joined with spaces is those words again.
solid_word = st.text(chars.filter(lambda c: not c.isspace()), min_size=1, max_size=10)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(words=st.lists(solid_word, min_size=1, max_size=12), max_length=st.integers(1, 64))
def test_align_maps_each_word_to_its_first_sub_token(words, max_length):
    tok = tokenizer()
    alignment = Encoder(tok, max_length).align(words)
    text, spans = join_words(words)
    full = tok(text, return_offsets_mapping=True)
    offsets = full["offset_mapping"][:max_length]
    assert alignment.input_ids == full["input_ids"][:max_length]
    assert len(alignment.word_tokens) == len(words)
    placed = [t for t in alignment.word_tokens if t is not None]
    assert placed == sorted(set(placed))  # one token per word, increasing with the word index
    assert alignment.word_tokens[: len(placed)] == placed  # truncation cuts off a tail of words
    assert alignment.truncated == (len(placed) < len(words))
    if len(full["input_ids"]) <= max_length:  # byte-level BPE: every visible word has a token
        assert not alignment.truncated
    for (start, end), token in zip(spans, alignment.word_tokens, strict=True):
        overlapping = [i for i, (s, e) in enumerate(offsets) if s < end and start < e]
        assert token == (overlapping[0] if overlapping else None)
        if token is not None:
            assert offsets[token][0] == start  # the first sub-token begins the word
    tag_ids = [list(range(len(words)))]
    (feature,) = Encoder(tok, max_length).encode_tokens([alignment], tag_ids, "test")
    labelled = {i: label for i, label in enumerate(feature["labels"]) if label != IGNORE_INDEX}
    assert labelled == {t: w for w, t in enumerate(alignment.word_tokens) if t is not None}


# --- window stitching -----------------------------------------------------------------------------------


@st.composite
def tokenized_words(draw):
    """Token count, each word's first token (sorted, some words with none), and a window size."""
    n_tokens = draw(st.integers(1, 120))
    starts = sorted(draw(st.sets(st.integers(0, n_tokens - 1), min_size=1)))
    with_gaps = [s if draw(st.integers(0, 9)) else None for s in starts]
    return n_tokens, with_gaps, draw(st.integers(1, 40))


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(case=tokenized_words(), causal=st.booleans())
def test_windows_cover_everything_cut_between_words_and_pick_the_most_context(case, causal):
    n_tokens, starts, size = case
    word_starts = [s for s in starts if s is not None]
    windows = cut_windows(word_starts, n_tokens, size)
    assert windows[0][0] == 0 and windows[-1][1] == n_tokens
    for (start, end), (next_start, next_end) in itertools.pairwise(windows):
        assert start < next_start <= end < next_end  # moving forward, overlapping or touching
    for start, end in windows:
        assert 0 < end - start <= size
        # A cut falls where a word starts, unless no word starts within a whole window before it.
        if end < n_tokens and end not in word_starts:
            assert end - start == size and not any(start < s <= end for s in word_starts)
    for (_, end), (next_start, _) in itertools.pairwise(windows):
        # The overlap is at most a quarter window, and the next window starts at a word (or the end).
        assert next_start >= end - size // OVERLAP and (next_start in word_starts or next_start == end)

    def room(token, window):
        start, end = windows[window]
        left = token - start if start > 0 else n_tokens
        right = n_tokens if causal or end >= n_tokens else end - 1 - token
        return min(left, right)

    chosen = best_windows(starts, windows, n_tokens, causal)
    for token, window in zip(starts, chosen, strict=True):
        if token is None:
            assert window is None
            continue
        start, end = windows[window]
        assert start <= token < end
        holding = [w for w, (s, e) in enumerate(windows) if s <= token < e]
        best = max(room(token, w) for w in holding)
        assert room(token, window) == best and window == min(w for w in holding if room(token, w) == best)
        if causal:  # the most preceding context: no window holding the word starts earlier
            assert start == min(windows[w][0] for w in holding)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    words=st.lists(solid_word, min_size=1, max_size=40),
    max_length=st.integers(1, 24),
    causal=st.booleans(),
    specials=st.booleans(),
)
def test_encoder_windows_predict_each_word_once_within_max_length(words, max_length, causal, specials):
    tok = tokenizer_with_specials() if specials else tokenizer()
    assume(not specials or max_length >= 3)  # room for <eos> + one token + <eos>
    encoder = Encoder(tok, max_length)
    text, spans = join_words(words)
    windows = encoder.windows(text, spans, causal)
    check_windows(encoder, text, spans, windows, causal, 1 if specials else 0)
    if len(tok(text)["input_ids"]) <= max_length:
        assert windows == [encoder.align_text(text, spans)]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(text=visible_text, max_length=st.integers(1, 12), causal=st.booleans())
def test_encoder_windows_over_raw_text(text, max_length, causal):
    spans = word_spans(text)
    assume(spans)
    encoder = Encoder(tokenizer(), max_length)
    check_windows(encoder, text, spans, encoder.windows(text, spans, causal), causal, 0)


def check_windows(encoder, text, spans, windows, causal, n_special):
    """Every word is predicted by exactly one window, at its own first token, where it has the most
    context; every window fits max_length."""
    encoding = encoder.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    size = encoder.max_length - 2 * n_special
    ranges = cut_windows(
        sorted(
            {next(i for i, (s, e) in enumerate(offsets) if s < end and start < e) for start, end in spans}
        ),
        len(ids),
        size,
    )
    assert len(windows) == len(ranges)
    owners: dict[int, int] = {}
    for index, (window, (start, end)) in enumerate(zip(windows, ranges, strict=True)):
        assert len(window.input_ids) <= encoder.max_length
        assert window.input_ids[n_special : len(window.input_ids) - n_special] == ids[start:end]
        assert len(window.word_tokens) == len(spans)
        for word, token in window.owned_words():
            assert word not in owners
            owners[word] = index
            global_token = token - n_special + start
            s, e = offsets[global_token]
            assert s < spans[word][1] and spans[word][0] < e  # the token belongs to the word
            assert not any(
                s2 < spans[word][1] and spans[word][0] < e2 for s2, e2 in offsets[:global_token]
            )  # and is its first
            holding = [i for i, (s3, e3) in enumerate(ranges) if s3 <= global_token < e3]
            if causal:
                assert start == min(ranges[i][0] for i in holding)
        assert [w for w, t in enumerate(window.word_tokens) if t is not None] == [
            w for w, _ in window.owned_words()
        ]
    assert sorted(owners) == list(range(len(spans)))  # every word (all have bytes, so tokens) once


# --- the fuzzer, briefly --------------------------------------------------------------------------------


def test_fuzzer_core_finds_nothing_in_200_cases(tmp_path):
    from bench.fuzz_readers import SEEDS, fuzz

    results = fuzz(200, seed=0, workdir=tmp_path)
    assert results["findings"] == []
    readers = {row["reader"] for row in results["calls"]}
    assert len(readers) == 11 and {row["format"] for row in results["calls"]} <= {s.name for s in SEEDS}
    for reader in readers:
        rows = [row for row in results["calls"] if row["reader"] == reader]
        assert sum(row["cases"] for row in rows) == 200
        # Not vacuous: each reader both accepted some mutated files and rejected others.
        assert sum(row["result"] for row in rows) > 0 and sum(row["LsllmError"] for row in rows) > 0


# --- regressions: one per bug the properties and the fuzzer found ---------------------------------------


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("deep.jsonl", "[" * 100_000, r"deep\.jsonl line 1 nests lists or objects too deeply to read"),
        ("deep.json", "[" * 100_000, r"deep\.json nests lists or objects too deeply to read; flatten"),
        (
            "big.jsonl",
            '{"text": "a", "label": ' + "9" * 5000 + "}",
            r"big\.jsonl line 1 holds a whole number of more than \d+ digits, too long to read; write it",
        ),
        ("big.json", "[" + "9" * 5000 + "]", r"big\.json holds a whole number of more than \d+ digits"),
        (
            "half.jsonl",
            '{"text": "ok", "label": 1}\n{"text": "a\\ud800b", "label": 1}\n',
            r"half\.jsonl line 2 has a \\u escape for half of a UTF-16 surrogate pair.*; write the character",
        ),
        (
            "half.json",
            '[{"text": "a", "label": "\\uDC00"}]',
            r"item 1 of .*half\.json has a \\u escape for half",
        ),
    ],
)
def test_json_beyond_pythons_parser_limits_is_an_lsllm_error(tmp_path, name, content, message):
    """Were RecursionError, ValueError, and (surrogates) a TypeError deep in the tokenizer."""
    with pytest.raises(LsllmError, match=message) as caught:
        read_records(write(tmp_path, name, content))
    one_line(caught.value)


def test_a_complete_surrogate_pair_escape_is_a_character(tmp_path):
    path = write(tmp_path, "pair.jsonl", '{"text": "\\ud83d\\ude00", "label": 1}\n')
    assert read_sequence_examples(path) == [SequenceExample("😀", None, 1)]


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def test_corrupt_parquet_gives_a_one_line_error(tmp_path):
    """pyarrow's thrift errors end in a newline, which went into the message."""
    data = bytearray(parquet_bytes(pa.table({"text": ["a", "b"], "label": [1, 2]})))
    data[-9] = 0x0F  # the last byte of the footer's metadata
    with pytest.raises(LsllmError, match=r"cannot read .*c\.parquet as Parquet \(.*\); check that") as caught:
        read_records(write(tmp_path, "c.parquet", bytes(data)))
    one_line(caught.value)


def parquet_not_utf8_value(path: Path) -> None:
    offsets = pa.py_buffer(np.array([0, 2, 4, 6], dtype=np.int32).tobytes())
    text = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"okok\xff\xfe")])
    pq.write_table(pa.table({"label": [1, 2, 3], "text": text}), path)


def parquet_not_utf8_name(path: Path) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"label": [1], "t\u00e9xt": ["a"]}), buffer, store_schema=False)
    path.write_bytes(buffer.getvalue().replace("\u00e9".encode(), b"\xc3\x28"))  # é -> invalid UTF-8


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (parquet_not_utf8_value, r"^row 3 of .*u\.parquet has text that is not UTF-8 in column 'text'; re"),
        (parquet_not_utf8_name, r"^the name of column 2 of .*u\.parquet is not UTF-8; re-write the file"),
    ],
)
def test_parquet_text_that_is_not_utf8_is_located(tmp_path, make, message):
    """Was a UnicodeDecodeError from pyarrow (a string value; a column name, found by the 24k-case run)."""
    path = tmp_path / "u.parquet"
    make(path)
    with pytest.raises(LsllmError, match=message):
        read_records(path)


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "x" * 500, "\u2028"])
def test_odd_column_names_stay_on_one_line(tmp_path, name):
    path = write(tmp_path, "odd.jsonl", json.dumps({name: "hello", "label": 1}) + "\n")
    with pytest.raises(LsllmError, match=r"column 'text' not found in .*odd\.jsonl \(columns: ") as caught:
        read_sequence_examples(path)
    assert len(one_line(caught.value)) < 300


def test_many_columns_are_listed_briefly(tmp_path):
    path = write(tmp_path, "wide.csv", ",".join(f"c{i}" for i in range(500)) + "\n" + "x," * 499 + "x\n")
    with pytest.raises(LsllmError, match=r"\(columns: c0, c1, .*c19, \.\.\. 500 in all\); choose one") as e:
        read_sequence_examples(path)
    assert len(one_line(e.value)) < 400


def test_unknown_label_message_shows_odd_training_labels_on_one_line():
    labels = LabelMap.from_labels(["pos", "two\nlines", "x" * 500])
    with pytest.raises(LsllmError, match=r"label 'neg' in dev\.csv is not among the training labels") as e:
        labels.index("neg", "dev.csv")
    assert "'two\\nlines'" in one_line(e.value) and len(str(e.value)) < 400


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"tokens": ["a", "", "b"], "tags": ["O", "O", "O"]}],
            r"row 1 of .* has a blank word \(''\) at position 2",
        ),
        (
            [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["\u00a0"], "tags": ["O"]}],
            r"row 2 .* \('\\xa0'\) at",
        ),
        (
            [{"tokens": [" ", "b"], "tags": ["O", "O"]}],
            r"blank word \(' '\) at position 1 of 'tokens'; remove it",
        ),
    ],
)
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_blank_words_in_token_rows_are_rejected(tmp_path, rows, message, suffix):
    """A blank word has no token: its tag was dropped in training and reported as truncation."""
    with pytest.raises(LsllmError, match=message) as caught:
        read_token_examples(write_table(tmp_path, suffix, rows))
    one_line(caught.value)


def test_long_values_are_cut_in_messages(tmp_path):
    with pytest.raises(LsllmError, match=r"^invalid tag 'B_xxxx") as caught:
        normalize_tags(["B_" + "x" * 100_000])
    assert len(str(caught.value)) < 300
    path = write(tmp_path, "l.jsonl", json.dumps({"text": "a", "label": {"k": list(range(10_000))}}) + "\n")
    with pytest.raises(
        LsllmError, match=r"row 1 of .* has label \{'k': \[0, 1, 2,.*which is not a class"
    ) as caught:
        read_sequence_examples(path)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"text": ""}, r"^row 2 of .*p\.jsonl has no words in 'text' \(found ''\); give it text"),
        ({"text": " \t\u200b"}, r"^row 2 of .*p\.jsonl has no words in 'text'"),
        (
            {"tokens": []},
            r"^row 2 of .*p\.jsonl needs a non-empty list of strings in 'tokens' \(found \[\]\)",
        ),
        ({"tokens": ["a", 1]}, r"^row 2 of .*p\.jsonl needs a non-empty list of strings in 'tokens'"),
        ({"tokens": ["a", None]}, r"needs a non-empty list of strings in 'tokens' \(found \['a', None\]\)"),
        ({"tokens": ["a", " "]}, r"^row 2 of .*p\.jsonl has a blank word \(' '\) at position 2 of 'tokens'"),
        ({"other": "a"}, r"^row 2 of .*p\.jsonl has neither 'tokens' \(a list of words\) nor 'text'"),
    ],
)
def test_prediction_rows_without_words_name_their_row(tmp_path, row, message):
    """Were accepted, then failed in predict (TypeError, or an error without the file's name)."""
    path = write(tmp_path, "p.jsonl", "".join(json.dumps(r) + "\n" for r in [{"text": "fine"}, row]))
    with pytest.raises(LsllmError, match=message) as caught:
        read_prediction_inputs(token_data(), str(path))
    one_line(caught.value)


def test_prediction_table_suffix_is_case_insensitive_and_paths_may_be_path_objects(tmp_path):
    path = write(tmp_path, "P.JSONL", '{"text": "Angela Merkel"}\n{"tokens": ["Paris"]}\n')
    assert read_prediction_inputs(token_data(), path) == ["Angela Merkel", ["Paris"]]


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_field_longer_than_the_csv_modules_limit_is_read(tmp_path, suffix):
    """Was 'field larger than field limit (131072)', blamed on an unbalanced quote."""
    long_text = "word " * 40_000
    delimiter = "," if suffix == ".csv" else "\t"
    path = write(tmp_path, f"long{suffix}", f"text{delimiter}label\n{long_text}{delimiter}1\n")
    assert read_sequence_examples(path) == [SequenceExample(long_text, None, "1")]
    assert csv.field_size_limit() == 131072  # the process-wide limit is put back


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        # U+00A0 inside a word was split off as a column, and the rest of the word was lost.
        ("10\u00a0000 CD O\nEuro NN B-MISC\n", [TokenExample(["10\u00a0000", "Euro"], ["O", "B-MISC"])]),
        # Old Mac line endings (CR only) made the file one line: one token, the rest dropped.
        (
            "EU B-ORG\rrejects O\r\rPeter B-PER\r",
            [TokenExample(["EU", "rejects"], ["B-ORG", "O"]), TokenExample(["Peter"], ["B-PER"])],
        ),
        # Whitespace of any kind around a line is still dropped, and an all-space line separates.
        (
            "\u3000EU\tB-ORG\u00a0\n\u2003\nPeter\tB-PER\n",
            [TokenExample(["EU"], ["B-ORG"]), TokenExample(["Peter"], ["B-PER"])],
        ),
    ],
)
def test_conll_columns_split_at_spaces_and_tabs_only(tmp_path, content, expected):
    assert read_token_examples(write(tmp_path, "t.conll", content)) == expected


def test_jsonl_with_cr_line_endings(tmp_path):
    path = write(tmp_path, "mac.jsonl", '{"text": "a", "label": 1}\r{"text": "b\\u2028c", "label": 2}\r')
    assert read_sequence_examples(path) == [
        SequenceExample("a", None, 1),
        SequenceExample("b\u2028c", None, 2),
    ]


def test_windows_of_a_long_input_take_memory_linear_in_its_words():
    """Each window held a list with an entry per word of the whole input: 200,000 words in 16-token
    windows needed tens of gigabytes."""
    text = "ab " * 20_000
    spans = word_spans(text)
    encoder = Encoder(tokenizer(), 8)
    tracemalloc.start()
    try:
        windows = encoder.windows(text, spans, causal=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(windows) > 2000
    assert peak < 60 * 2**20  # a list per window would be 2,000 x 20,000 x 8 bytes = 320 MB
    assert sum(1 for w in windows for _ in w.owned_words()) == len(spans)
    assert windows[5].word_tokens == list(windows[5].word_tokens)  # still reads as the list it stands for
