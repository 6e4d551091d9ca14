"""Hugging Face datasets as data sources: a datasets.Dataset, a save_to_disk folder, a folder of data files
and a hub id, read through the same row checks as the file readers, with the same one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

from lsllm.data.examples import SequenceExample, TokenExample, read_sequence_examples, read_token_examples
from lsllm.data.sources import DatasetSpec, dataset_spec, read_rows
from lsllm.errors import LsllmError

CONLL_FEATURES = Features(
    {
        "tokens": List(Value("string")),
        "ner_tags": List(ClassLabel(names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])),
    }
)
SST2_FEATURES = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})


def conll_like() -> Dataset:
    """Token data as the hub's CoNLL-2003 holds it: words, and tags as ClassLabel ids."""
    rows = {"tokens": [["Ann", "Lee", "saw", "Paris"], ["Bob"]], "ner_tags": [[1, 2, 0, 3], [1]]}
    return Dataset.from_dict(rows, features=CONLL_FEATURES)


def sst2_like() -> DatasetDict:
    """Sequence data as GLUE holds it: ClassLabel labels, and -1 (no label) in the test split."""
    return DatasetDict(
        train=Dataset.from_dict({"sentence": ["a gem", "a dud"], "label": [1, 0]}, features=SST2_FEATURES),
        test=Dataset.from_dict({"sentence": ["who knows"], "label": [-1]}, features=SST2_FEATURES),
    )


def one_line(caught) -> str:
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- what a source string names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "spec"),
    [
        ("conll2003:train", DatasetSpec("conll2003", None, "train")),
        ("nyu-mll/glue:sst2:validation", DatasetSpec("nyu-mll/glue", "sst2", "validation")),
        ("missing.jsonl", None),  # no split: a file, reported missing as one
        ("data/train.jsonl", None),
        ("a:b:c:d", None),  # not a spec, so a file path
    ],
)
def test_a_source_string_names_a_file_or_a_dataset_split(source, spec):
    assert dataset_spec(source) == spec


def test_a_path_that_exists_is_read_as_that_path_even_with_a_colon(tmp_path):
    path = tmp_path / "odd:name.jsonl"
    path.write_text('{"text": "hi", "label": "a"}\n', encoding="utf-8")
    assert dataset_spec(str(path)) is None
    assert read_rows(str(path)) == [{"text": "hi", "label": "a"}]
    assert dataset_spec(str(tmp_path)) == DatasetSpec(str(tmp_path), None, None)


# --- datasets.Dataset objects ---------------------------------------------------------------------------


def test_class_label_tags_become_their_names_and_bio():
    examples = read_token_examples(conll_like(), tags_field="ner_tags")
    assert examples == [
        TokenExample(["Ann", "Lee", "saw", "Paris"], ["B-PER", "I-PER", "O", "B-LOC"]),
        TokenExample(["Bob"], ["B-PER"]),
    ]


def test_iob1_class_labels_are_normalised_as_in_files():
    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=["O", "I-PER"]))})
    dataset = Dataset.from_dict({"tokens": [["Ann", "Lee"]], "ner_tags": [[1, 1]]}, features=features)
    assert read_token_examples(dataset, tags_field="ner_tags")[0].tags == ["B-PER", "I-PER"]


def test_class_label_labels_become_their_names_and_minus_one_is_no_label():
    splits = sst2_like()
    examples = read_sequence_examples(splits["train"], text_fields=["sentence"])
    assert examples == [
        SequenceExample("a gem", label="positive"),
        SequenceExample("a dud", label="negative"),
    ]
    unlabelled = read_sequence_examples(splits["test"], text_fields=["sentence"], require_labels=False)
    assert unlabelled == [SequenceExample("who knows")]
    with pytest.raises(LsllmError) as caught:
        read_sequence_examples(splits["test"], text_fields=["sentence"], name="the test dataset")
    assert one_line(caught) == (
        "row 1 of the test dataset has no label in column 'label'; fill it in or remove the row"
    )


def test_plain_columns_and_a_torch_format_read_as_python_values():
    dataset = Dataset.from_dict({"text": ["fine", "awful"], "stars": [5, 1]}).with_format("torch")
    assert read_sequence_examples(dataset, label_field="stars") == [
        SequenceExample("fine", None, 5),
        SequenceExample("awful", None, 1),
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# The same bad rows, in a file and in a dataset: the same message, naming the file or the dataset.
SAME_ERRORS = {
    "empty text": ("sequence", [{"text": "ok", "label": "a"}, {"text": "  ", "label": "b"}], {}),
    "no text": ("sequence", [{"text": "ok", "label": "a"}, {"text": None, "label": "b"}], {}),
    "no label": ("sequence", [{"text": "ok", "label": "a"}, {"text": "hi", "label": None}], {}),
    "missing column": ("sequence", [{"txt": "ok", "label": "a"}], {}),
    "missing tags field": ("token", [{"tokens": ["a"], "tags": ["O"]}], {"tags_field": "ner_tags"}),
    "tokens and tags differ": ("token", [{"tokens": ["a", "b"], "tags": ["O"]}], {}),
    "blank word": ("token", [{"tokens": ["a", " "], "tags": ["O", "O"]}], {}),
    "bad tag": ("token", [{"tokens": ["a"], "tags": ["B_PER"]}], {}),
    "empty word list": ("token", [{"tokens": [], "tags": []}], {}),
}


@pytest.mark.parametrize(("task", "rows", "options"), SAME_ERRORS.values(), ids=SAME_ERRORS)
def test_a_dataset_row_gets_the_files_one_line_error(tmp_path, task, rows, options):
    read = read_sequence_examples if task == "sequence" else read_token_examples
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    with pytest.raises(LsllmError) as from_file:
        read(path, **options)
    with pytest.raises(LsllmError) as from_dataset:
        read(Dataset.from_list(rows), **options, name="the train dataset")
    assert one_line(from_dataset) == one_line(from_file).replace(str(path), "the train dataset")
    assert "the train dataset" in one_line(from_dataset)


def test_an_empty_dataset_is_an_error():
    empty = Dataset.from_dict({"text": [], "label": []})
    with pytest.raises(LsllmError, match=r"^the given dataset has no data rows; add rows or point to"):
        read_sequence_examples(empty)


def test_splits_and_streams_are_refused_with_the_fix():
    with pytest.raises(LsllmError, match=r"is a DatasetDict of splits \(train, test\); pass one split"):
        read_sequence_examples(sst2_like(), text_fields=["sentence"])
    stream = Dataset.from_dict({"text": ["a"], "label": ["b"]}).to_iterable_dataset()
    with pytest.raises(LsllmError, match=r"is a streaming IterableDataset; load it without streaming=True"):
        read_sequence_examples(stream)
    with pytest.raises(LsllmError, match=r"cannot read data from a list; give a file path, a dataset as"):
        read_sequence_examples([{"text": "a", "label": "b"}])


# --- save_to_disk folders -------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path) -> dict[str, str]:
    splits, one = tmp_path / "sst2", tmp_path / "conll-train"
    sst2_like().save_to_disk(splits)
    conll_like().save_to_disk(one)
    return {"splits": str(splits), "one": str(one)}


def test_a_saved_dataset_and_a_split_of_saved_splits(saved):
    assert read_token_examples(saved["one"], tags_field="ner_tags") == read_token_examples(
        conll_like(), tags_field="ner_tags"
    )
    [gem, dud] = read_sequence_examples(f"{saved['splits']}:train", text_fields=["sentence"])
    assert (gem.label, dud.label) == ("positive", "negative")


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("", r"sst2 holds the splits train, test; name one, e.g\. .*sst2:train$"),
        (":dev", r"sst2 has no split 'dev' \(splits: train, test\); name one$"),
        (":sst2:train", r"a save_to_disk folder has no configs; give .*sst2:SPLIT"),
    ],
)
def test_saved_splits_need_one_split_by_its_name(saved, suffix, message):
    with pytest.raises(LsllmError, match=message) as caught:
        read_sequence_examples(saved["splits"] + suffix, text_fields=["sentence"])
    one_line(caught)


def test_a_saved_dataset_has_no_splits_to_name(saved):
    with pytest.raises(LsllmError, match=r"conll-train holds one dataset, not splits; drop ':train'"):
        read_token_examples(saved["one"] + ":train", tags_field="ner_tags")


def test_a_file_has_no_splits(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "b"}])
    with pytest.raises(LsllmError, match=r"train\.jsonl is a file, which has no splits; drop ':train'"):
        read_sequence_examples(f"{path}:train")


def test_a_folder_that_is_no_dataset_says_what_it_takes(tmp_path):
    with pytest.raises(LsllmError, match=r"is a folder but not one written by datasets' save_to_disk; give"):
        read_sequence_examples(str(tmp_path))


# --- datasets.load_dataset: folders of data files, and the hub ------------------------------------------


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    """load_dataset writes its Arrow cache here, not in the user's home."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")


def test_a_split_of_a_folder_of_data_files_loads_with_datasets(tmp_path, datasets_cache):
    folder = tmp_path / "reviews"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\ngood film,pos\nbad film,neg\n", encoding="utf-8")
    (folder / "test.csv").write_text("text,label\nfine,pos\n", encoding="utf-8")
    assert read_sequence_examples(f"{folder}:test") == [SequenceExample("fine", None, "pos")]
    with pytest.raises(LsllmError) as caught:
        read_sequence_examples(f"{folder}:dev")
    assert one_line(caught).startswith(f"cannot load split 'dev' of dataset '{folder}' (Unknown split")


def test_a_hub_dataset_that_cannot_be_reached_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # the tests never use the network
    with pytest.raises(LsllmError) as caught:
        read_token_examples("someone/conll2003:train", tags_field="ner_tags")
    message = one_line(caught)
    assert message.startswith("cannot load split 'train' of dataset 'someone/conll2003' (Couldn't reach")
    assert "HF_HUB_OFFLINE=1 reads a dataset loaded before from the cache" in message
