import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lsllm.data.examples import (
    SequenceExample,
    TokenExample,
    normalize_tags,
    read_sequence_examples,
    read_token_examples,
)
from lsllm.data.tables import read_records
from lsllm.errors import LsllmError


def write(tmp_path, name, content, newline="\n"):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8", newline=newline)
    return path


def write_jsonl(tmp_path, name, rows):
    return write(tmp_path, name, "".join(json.dumps(row) + "\n" for row in rows))


# --- tables -------------------------------------------------------------------------------------------


def test_sst2_style_tsv_keeps_quotes_and_trailing_space(tmp_path):
    path = write(tmp_path, "train.tsv", 'sentence\tlabel\nit \'s a "charming" movie \t1\n" bad \t0\n')
    examples = read_sequence_examples(path, text_fields=("sentence",))
    assert examples == [
        SequenceExample('it \'s a "charming" movie ', None, "1"),
        SequenceExample('" bad ', None, "0"),
    ]


def test_csv_with_crlf_records_and_embedded_newline(tmp_path):
    content = 'text,label\r\n"first line\nsecond line",positive\r\n"say ""hi""",negative \r\n'
    path = write(tmp_path, "train.csv", content, newline="")
    assert read_records(path) == [
        {"text": "first line\nsecond line", "label": "positive"},
        {"text": 'say "hi"', "label": "negative "},
    ]
    labels = [example.label for example in read_sequence_examples(path)]
    assert labels == ["positive", "negative"]


def test_csv_with_utf8_bom_has_clean_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("text,label\nhéllo,1\n".encode("utf-8-sig"))
    assert read_records(path) == [{"text": "héllo", "label": "1"}]


def test_jsonl_keeps_int_labels_and_skips_blank_lines(tmp_path):
    path = write(tmp_path, "train.jsonl", '{"text": "good", "label": 1}\n\n{"text": "bad", "label": 0}\r\n')
    examples = read_sequence_examples(path)
    assert [(e.text, e.label) for e in examples] == [("good", 1), ("bad", 0)]
    assert isinstance(examples[0].label, int)


def test_json_list_and_json_lines(tmp_path):
    rows = [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]
    listed = write(tmp_path, "list.json", json.dumps(rows, indent=2))
    lined = write_jsonl(tmp_path, "lines.json", rows)
    assert read_records(listed) == rows
    assert read_records(lined) == rows


def test_parquet_table(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"review": ["fine", "awful"], "stars": [5, 1]}), path)
    examples = read_sequence_examples(path, text_fields=["review"], label_field="stars")
    assert examples == [SequenceExample("fine", None, 5), SequenceExample("awful", None, 1)]


def test_several_text_fields_are_joined_with_newline(tmp_path):
    path = write_jsonl(tmp_path, "t.jsonl", [{"title": "Hi", "body": "there", "label": "a"}])
    [example] = read_sequence_examples(path, text_fields=("title", "body"))
    assert example.text == "Hi\nthere"
    assert example.text_pair is None


def test_pair_mode_fills_text_pair(tmp_path):
    path = write_jsonl(tmp_path, "nli.jsonl", [{"premise": "A", "hypothesis": "B", "label": "entailment"}])
    [example] = read_sequence_examples(path, text_fields=("premise", "hypothesis"), pair=True)
    assert example == SequenceExample("A", "B", "entailment")


def test_labels_optional_when_not_required(tmp_path):
    path = write(tmp_path, "test.tsv", "text\nhello\n")
    assert read_sequence_examples(path, require_labels=False) == [SequenceExample("hello")]


def test_float_and_nan_labels_from_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": [2.0, float("nan")]}), path)
    assert [e.label for e in read_sequence_examples(path, require_labels=False)] == [2, None]
    with pytest.raises(LsllmError, match=r"row 2 of .*t\.parquet has no label in column 'label'; fill it in"):
        read_sequence_examples(path)


def test_multi_label_rows_hold_lists_of_labels(tmp_path):
    rows = [{"text": "a", "label": ["x", " y "]}, {"text": "b", "label": []}, {"text": "c", "label": 3.0}]
    assert [e.label for e in read_sequence_examples(write_jsonl(tmp_path, "m.jsonl", rows))] == [
        ["x", "y"],
        [],  # a row with none of the labels
        3,
    ]
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": [["x"], ["y", "x"]]}), path)
    assert [e.label for e in read_sequence_examples(path)] == [["x"], ["y", "x"]]


def test_label_columns_hold_one_0_or_1_per_label(tmp_path):
    path = write(tmp_path, "m.csv", "text,toxic,insult\na,1,0\nb,0,0\nc,TRUE,1\n")
    examples = read_sequence_examples(path, label_columns=["toxic", "insult"])
    assert [e.label for e in examples] == [["toxic"], [], ["toxic", "insult"]]
    unlabelled = write(tmp_path, "u.csv", "text\na\n")
    assert read_sequence_examples(unlabelled, label_columns=["toxic"], require_labels=False)[0].label is None
    with pytest.raises(LsllmError, match=r"column 'insult' not found .*; choose one with --label-columns"):
        read_sequence_examples(
            write(tmp_path, "n.csv", "text,toxic\na,1\n"), label_columns=["toxic", "insult"]
        )
    with pytest.raises(
        LsllmError, match=r"^row 2 of .*b\.csv has '2' in label column 'insult'; .* 1 .* or 0$"
    ):
        read_sequence_examples(write(tmp_path, "b.csv", "text,insult\na,1\nb,2\n"), label_columns=["insult"])


def test_regression_targets_are_numbers(tmp_path):
    path = write(tmp_path, "r.csv", "text,label\na,3.5\nb, -2 \nc,1e-3\n")
    assert [e.label for e in read_sequence_examples(path, numeric=True)] == [3.5, -2.0, 0.001]
    rows = [{"text": "a", "label": 2}, {"text": "b", "label": None}]
    labels = [
        e.label
        for e in read_sequence_examples(
            write_jsonl(tmp_path, "r.jsonl", rows), numeric=True, require_labels=False
        )
    ]
    assert labels == [2.0, None] and isinstance(labels[0], float)


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("high", r"has label 'high', which is not a number; --task regression needs a number in every row"),
        (["a"], r"has a list of labels \['a'\], not a number; --task regression needs one number per row"),
        (True, r"has the label True, not a number"),
        ("inf", r"has label inf; give a finite number"),
    ],
)
def test_a_regression_target_that_is_not_a_number_is_a_one_line_error(tmp_path, label, message):
    path = write_jsonl(tmp_path, "r.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": label}])
    with pytest.raises(LsllmError, match=r"^row 2 of .*r\.jsonl " + message):
        read_sequence_examples(path, numeric=True)


# --- table errors -------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(LsllmError, match=r"^file not found: .*nope\.csv; check the path$"):
        read_records(tmp_path / "nope.csv")


def test_directory_is_rejected(tmp_path):
    folder = tmp_path / "data.csv"
    folder.mkdir()
    with pytest.raises(LsllmError, match=r"is a directory, not a file; give the path of a data file"):
        read_records(folder)


@pytest.mark.parametrize(("name", "content"), [("e.csv", ""), ("h.csv", "text,label\n"), ("e.jsonl", "\n\n")])
def test_empty_table(tmp_path, name, content):
    with pytest.raises(LsllmError, match=r"has no data rows; add rows"):
        read_records(write(tmp_path, name, content))


TABLE_ERRORS = {
    "not UTF-8": ("latin.csv", "text,label\ncaf\xe9,1\n".encode("latin-1"),
                  r"latin\.csv is not UTF-8 text .*; re-save it with UTF-8 encoding"),
    "unknown extension": ("train.xlsx", b"x",
                          r"unsupported file type '\.xlsx'.*use one of \.csv, \.json, \.jsonl"),
    "bad JSONL line": ("bad.jsonl", b'{"text": "ok", "label": 1}\n\n{"text": "oops", label: 2}\n',
                       r"bad\.jsonl line 3 is not valid JSON .*; fix that line"),
    "JSONL line not an object": ("list.jsonl", b'["text", 1]\n',
                                 r"line 1 is not a JSON object; make each line an object"),
    "bad JSON list": ("bad.json", b'[{"text": "a"},\n {"text": }]',
                      r"bad\.json is not valid JSON \(line 2 column 11: .*\); fix the file"),
    "unclosed quote": ("q.csv", b'text,label\n"never closed,1\nnext,0\n',
                       r"cannot parse .*q\.csv near line 3 .*unbalanced double quote"),
    "wrong field count": ("t.tsv", b"text\tlabel\ngood\t1\nstray\ttab\t0\n",
                          r"t\.tsv line 3 has 3 fields but the header has 2; check that line"),
    "duplicate column": ("d.csv", b"text,text\na,b\n",
                         r"column 'text' appears twice in the header of .*; rename one"),
}  # fmt: skip


@pytest.mark.parametrize(("name", "content", "message"), TABLE_ERRORS.values(), ids=TABLE_ERRORS)
def test_a_broken_table_is_a_one_line_error_naming_the_file_and_fix(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LsllmError, match=message) as caught:
        read_records(path)
    assert "\n" not in str(caught.value)


def test_missing_text_column_names_columns_and_flag(tmp_path):
    path = write(tmp_path, "train.csv", "txt,label\nhi,1\n")
    with pytest.raises(LsllmError) as caught:
        read_sequence_examples(path)
    message = str(caught.value)
    assert message == f"column 'text' not found in {path} (columns: txt, label); choose one with --text-field"


def test_pair_needs_exactly_two_fields(tmp_path):
    path = write_jsonl(tmp_path, "p.jsonl", [{"text": "a", "label": 1}])
    with pytest.raises(
        LsllmError, match=r"text pairs need exactly two text fields, got 1 \(text\); give --text-field"
    ):
        read_sequence_examples(path, pair=True)


@pytest.mark.parametrize(
    ("value", "found"), [("   ", "empty text"), (None, "no text"), (["a"], "a non-string")]
)
def test_bad_text_names_row(tmp_path, value, found):
    path = write_jsonl(tmp_path, "t.jsonl", [{"text": "ok", "label": 1}, {"text": value, "label": 0}])
    with pytest.raises(LsllmError, match=rf"row 2 of .*t\.jsonl has {found} in column 'text'; give it text"):
        read_sequence_examples(path)


EXAMPLE_ERRORS = {
    "no label column": ("train.csv", "text,sentiment\nhi,1\n",
                        r"column 'label' not found .*\(columns: text, sentiment\); .*--label-field"),
    "blank label": ("t.csv", "text,label\na,pos\nb,  \n",
                    r"row 2 of .*t\.csv has no label in column 'label'; fill it in"),
    "nested label": ("t.jsonl", '{"text": "a", "label": [["x", "y"]]}\n',
                     r"row 1 of .* has label \['x', 'y'\], which is not a class name"),
    "blank label in a list": ("t.jsonl", '{"text": "a", "label": ["x", " "]}\n',
                              r"row 1 of .* has an empty or missing label in its list \['x', ' '\]; remove"),
}  # fmt: skip


@pytest.mark.parametrize(("name", "content", "message"), EXAMPLE_ERRORS.values(), ids=EXAMPLE_ERRORS)
def test_a_table_without_usable_labels_is_a_one_line_error(tmp_path, name, content, message):
    with pytest.raises(LsllmError, match=message):
        read_sequence_examples(write(tmp_path, name, content))


def test_blank_labels_are_allowed_when_not_required(tmp_path):
    path = write(tmp_path, "t.csv", "text,label\na,pos\nb,  \n")
    assert read_sequence_examples(path, require_labels=False)[1].label is None


# --- token files --------------------------------------------------------------------------------------

CONLL2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP I-LOC
1996-08-22 CD I-NP O"""


def test_conll2003_iob1_with_docstart_and_no_final_blank_line(tmp_path):
    path = write(tmp_path, "eng.train", CONLL2003, newline="\r\n")
    assert read_token_examples(path) == [
        TokenExample(["EU", "rejects", "German", "call"], ["B-ORG", "O", "B-MISC", "O"]),
        TokenExample(["Peter", "Blackburn"], ["B-PER", "I-PER"]),
        TokenExample(["BRUSSELS", "1996-08-22"], ["B-LOC", "O"]),
    ]


def test_wnut_style_tab_file(tmp_path):
    content = (
        "@paulwalk\tO\nIt\tO\n's\tO\nthe\tO\nEmpire\tB-location\nState\tI-location\n\nStar\tB-creative-work\n"
    )
    examples = read_token_examples(write(tmp_path, "wnut17train.conll", content))
    assert examples[0].tokens == ["@paulwalk", "It", "'s", "the", "Empire", "State"]
    assert examples[0].tags == ["O", "O", "O", "O", "B-location", "I-location"]
    assert examples[1] == TokenExample(["Star"], ["B-creative-work"])


def test_iobes_file_becomes_bio(tmp_path):
    content = "New B-LOC\nYork E-LOC\nis O\nbig O\n\nParis S-LOC\n"
    examples = read_token_examples(write(tmp_path, "iobes.bio", content))
    assert [e.tags for e in examples] == [["B-LOC", "I-LOC", "O", "O"], ["B-LOC"]]


def test_unlabelled_single_column_file(tmp_path):
    path = write(tmp_path, "test.txt", "Hello\nworld\n\n\nBye\n")
    assert read_token_examples(path, require_labels=False) == [
        TokenExample(["Hello", "world"]),
        TokenExample(["Bye"]),
    ]


def test_single_column_line_when_tags_required(tmp_path):
    path = write(tmp_path, "train.txt", "Hello O\nworld\n")
    with pytest.raises(
        LsllmError, match=r"train\.txt line 2 has only one column \('world'\) but tags are required"
    ):
        read_token_examples(path)


def test_conll_bad_tag_names_lines(tmp_path):
    path = write(tmp_path, "train.conll", "a O\n\nb B_PER\nc O\n")
    with pytest.raises(
        LsllmError, match=r"invalid tag 'B_PER' in .*train\.conll lines 3-4; tags must be O or B-"
    ):
        read_token_examples(path)


def test_conll_without_sentences(tmp_path):
    path = write(tmp_path, "empty.conll", "-DOCSTART- O\n\n\n")
    with pytest.raises(LsllmError, match=r"contains no sentences; put one token per line"):
        read_token_examples(path)


def test_token_jsonl_with_custom_fields(tmp_path):
    rows = [{"words": ["Ann", "Lee", "sings"], "ner": ["B-PER", "I-PER", "O"]}]
    path = write_jsonl(tmp_path, "ner.jsonl", rows)
    examples = read_token_examples(path, tokens_field="words", tags_field="ner")
    assert examples == [TokenExample(["Ann", "Lee", "sings"], ["B-PER", "I-PER", "O"])]


def test_token_parquet_without_tags_when_not_required(tmp_path):
    path = tmp_path / "ner.parquet"
    pq.write_table(pa.table({"tokens": [["a", "b"], ["c"]]}), path)
    assert read_token_examples(path, require_labels=False) == [TokenExample(["a", "b"]), TokenExample(["c"])]


def test_token_json_missing_fields_name_flags(tmp_path):
    path = write_jsonl(tmp_path, "ner.jsonl", [{"words": ["a"], "tags": ["O"]}])
    with pytest.raises(
        LsllmError, match=r"column 'tokens' not found .*\(columns: words, tags\); .*--tokens-field"
    ):
        read_token_examples(path)
    path = write_jsonl(tmp_path, "ner2.jsonl", [{"tokens": ["a"], "ner_tags": ["O"]}])
    with pytest.raises(LsllmError, match=r"column 'tags' not found .*; choose one with --tags-field"):
        read_token_examples(path)


def test_token_json_length_mismatch(tmp_path):
    rows = [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["a", "b"], "tags": ["O"]}]
    path = write_jsonl(tmp_path, "ner.jsonl", rows)
    with pytest.raises(
        LsllmError, match=r"row 2 of .* has 2 tokens but 1 tags; give exactly one tag per token"
    ):
        read_token_examples(path)


@pytest.mark.parametrize("tokens", [[], "a b", [1, 2]])
def test_token_json_needs_list_of_strings(tmp_path, tokens):
    path = write_jsonl(tmp_path, "ner.jsonl", [{"tokens": tokens, "tags": ["O", "O"]}])
    with pytest.raises(LsllmError, match=r"row 1 of .* needs a non-empty list of strings in 'tokens'"):
        read_token_examples(path)


# --- tag normalisation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["I-PER", "I-PER", "O", "I-LOC"], ["B-PER", "I-PER", "O", "B-LOC"]),  # IOB1 starts
        (["I-PER", "B-PER", "I-PER"], ["B-PER", "B-PER", "I-PER"]),  # IOB1 adjacent same type
        (["I-PER", "I-LOC"], ["B-PER", "B-LOC"]),  # type change
        (["B-ORG", "I-ORG", "O"], ["B-ORG", "I-ORG", "O"]),  # BIO unchanged
        (["S-PER", "B-LOC", "I-LOC", "E-LOC"], ["B-PER", "B-LOC", "I-LOC", "I-LOC"]),  # IOBES
        (["U-X", "B-X", "L-X"], ["B-X", "B-X", "I-X"]),  # BILOU
        (["E-LOC", "I-LOC"], ["B-LOC", "B-LOC"]),  # closed entity does not continue
        (["B-creative-work", "I-creative-work"], ["B-creative-work", "I-creative-work"]),
    ],
)
def test_normalize_tags(tags, expected):
    assert normalize_tags(tags) == expected


@pytest.mark.parametrize("tag", ["B_PER", "Q-X", "", "PER", "B-", "b-per"])
def test_normalize_tags_rejects_unknown_forms(tag):
    with pytest.raises(LsllmError, match=rf"^invalid tag '{tag}'; tags must be O or B-/I-/E-/S-/L-/U-"):
        normalize_tags(["O", tag])
