"""Where rows come from: a data file, or a Hugging Face dataset (a `save_to_disk` folder, a folder of data
files or a hub id with a split, or a `datasets.Dataset`), each as one dict per row for the example
readers in lsllm.data.examples, which check every row the same way whatever its source.

A source string is read by one rule: a path that exists is that file or folder; anything else of the form
BASE:SPLIT or BASE:CONFIG:SPLIT is a split of a dataset, BASE being an existing folder or else a hub id;
anything else is a file path (and "file not found" if it is missing)."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from lsllm.data.tables import read_records
from lsllm.errors import LsllmError, first_line

Source = Any  # a path (str or os.PathLike), a dataset spec string, or a datasets.Dataset
_SPEC = re.compile(r"(?P<base>[^:]+?)(?::(?P<config>[^:]+))?:(?P<split>[^:/\\]+)")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset named by a string: a folder or hub id, the config (hub) and the split, if given."""

    base: str
    config: str | None
    split: str | None


def is_dataset(value: Any) -> bool:
    """Whether `value` is an object of the datasets library (if it was never imported, nothing can be)."""
    datasets = sys.modules.get("datasets")
    kinds = ("Dataset", "DatasetDict", "IterableDataset", "IterableDatasetDict")
    return datasets is not None and isinstance(value, tuple(getattr(datasets, kind) for kind in kinds))


def dataset_spec(source: Source) -> DatasetSpec | None:
    """The dataset a source string names, or None for a data file (see the module's rule)."""
    if not isinstance(source, str | os.PathLike):
        return None
    text = os.fspath(source)
    if os.path.isdir(text):
        return DatasetSpec(text, None, None)
    if os.path.exists(text):
        return None
    match = _SPEC.fullmatch(text)
    return DatasetSpec(*match.group("base", "config", "split")) if match else None


def holds_rows(source: Source, row_suffixes: tuple[str, ...]) -> bool:
    """Whether a source is read as rows (a dataset, or a file with one of `row_suffixes`), not as lines."""
    if not isinstance(source, str | os.PathLike) or dataset_spec(source) is not None:
        return True
    return os.path.splitext(os.fspath(source))[1].lower() in row_suffixes


def source_name(source: Source, role: str = "given") -> str:
    """How messages name a source: its path or spec, or for a datasets.Dataset "the <role> dataset"."""
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return f"the {role} dataset"


def read_rows(source: Source, name: str | None = None) -> list[dict]:
    """One dict per row of a file or dataset; a dataset's ClassLabel ids become their names."""
    name = name or source_name(source)
    if is_dataset(source):
        dataset = _one_split(source, name)
    elif isinstance(source, str | os.PathLike):
        spec = dataset_spec(source)
        if spec is None:
            return read_records(source)
        dataset = _load(spec, name)
    else:
        raise LsllmError(
            f"cannot read data from a {type(source).__name__}; give a file path, a dataset as NAME:SPLIT or"
            " a datasets.Dataset"
        )
    rows = _named_classes(dataset, name)
    if not rows:
        raise LsllmError(f"{name} has no data rows; add rows or point to the right split")
    return rows


def _one_split(dataset: Any, name: str) -> Any:
    import datasets

    if isinstance(dataset, datasets.DatasetDict):
        raise LsllmError(
            f"{name} is a DatasetDict of splits ({', '.join(dataset)}); pass one split, e.g. dataset['train']"
        )
    if not isinstance(dataset, datasets.Dataset):
        raise LsllmError(
            f"{name} is a streaming {type(dataset).__name__}; load it without streaming=True to pass it"
        )
    return dataset


def _load(spec: DatasetSpec, name: str) -> Any:
    """The split a spec names: from a save_to_disk folder, or with datasets.load_dataset (a folder of data
    files, or the hub; a hub dataset read once before is read from the cache with HF_HUB_OFFLINE=1)."""
    import datasets

    if os.path.isfile(spec.base):
        raise LsllmError(f"{spec.base} is a file, which has no splits; drop ':{spec.split}' from {name}")
    if os.path.isdir(spec.base):
        try:
            saved = datasets.load_from_disk(spec.base)
        except FileNotFoundError:  # not a save_to_disk folder: maybe a folder of data files
            saved = None
        except Exception as error:
            raise LsllmError(
                f"cannot read the dataset folder {spec.base} ({first_line(error)}); save it again with"
                " save_to_disk"
            ) from None
        if saved is not None:
            return _saved_split(saved, spec, name)
        if spec.split is None:
            raise LsllmError(
                f"{spec.base} is a folder but not one written by datasets' save_to_disk; give a data file in"
                f" it, or FOLDER:SPLIT to load its data files with datasets"
            )
    try:
        return datasets.load_dataset(spec.base, spec.config, split=spec.split)
    except Exception as error:  # offline, unknown name or split, a script dataset: all mean the same here
        raise LsllmError(
            f"cannot load split '{spec.split}' of dataset '{spec.base}' ({first_line(error)}); check the"
            " name, config and split (and the connection to the Hugging Face Hub; HF_HUB_OFFLINE=1 reads"
            " a dataset loaded before from the cache), or the path if you meant a file"
        ) from None


def _saved_split(saved: Any, spec: DatasetSpec, name: str) -> Any:
    import datasets

    if spec.config is not None:
        raise LsllmError(f"a save_to_disk folder has no configs; give {spec.base}:SPLIT, not {name}")
    if isinstance(saved, datasets.Dataset):
        if spec.split is not None:
            raise LsllmError(f"{spec.base} holds one dataset, not splits; drop ':{spec.split}' from {name}")
        return saved
    if spec.split is None:
        raise LsllmError(
            f"{spec.base} holds the splits {', '.join(saved)}; name one, e.g. {spec.base}:{next(iter(saved))}"
        )
    if spec.split not in saved:
        raise LsllmError(f"{spec.base} has no split '{spec.split}' (splits: {', '.join(saved)}); name one")
    return saved[spec.split]


def _named_classes(dataset: Any, name: str) -> list[dict]:
    """The rows, with every ClassLabel id (alone, or in a list such as NER tags) replaced by its name, so
    that `--tags-field ner_tags` reads tags; -1, the datasets convention for no label, becomes None."""
    import datasets

    rows = dataset.to_list()
    for column, feature in dataset.features.items():
        inner = getattr(feature, "feature", None)
        listed = isinstance(feature, datasets.List | datasets.LargeList)
        classes = inner if listed else feature
        if not isinstance(classes, datasets.ClassLabel):
            continue
        for number, row in enumerate(rows, start=1):
            where = f"row {number} of {name}"
            value = row[column]
            if not listed:
                row[column] = _class_name(value, classes.names, column, where)
            elif value is not None:
                row[column] = [_class_name(v, classes.names, column, where) for v in value]
    return rows


def _class_name(value: int | None, names: list[str], column: str, where: str) -> str | None:
    if value is None or value == -1:
        return None
    if not 0 <= value < len(names):
        raise LsllmError(
            f"{where} has class id {value} in column '{column}', but its ClassLabel has {len(names)} names;"
            " fix the dataset"
        )
    return names[value]
