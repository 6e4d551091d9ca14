"""Turn the shared benchmark files into the same seeded train, selection and evaluation splits for all.

Each task has a training subsample, a small selection split (the dev data the checkpoint is chosen on)
and a full evaluation split. They are written once as JSONL in lsllm's formats, so every system reads
exactly the same examples.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lsllm.atomic import write_text_atomic
from lsllm.data.examples import read_token_examples


@dataclass(frozen=True)
class Budget:
    """How much of a task a system may train on, and for how long."""

    train_examples: int
    selection_examples: int
    epochs: float
    max_length: int


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # "sequence" or "token"
    metric: str  # the headline metric in the results table
    evaluation_split: str  # the name of the split we report on, as the dataset calls it
    budget: Budget
    load: Callable[[Path], dict[str, list[dict]]]  # data dir -> {"train", "selection", "evaluation"} rows
    description: str = ""  # the instruction for the prompt-based systems
    label_words: dict[str, str] | None = None  # label -> answer word(s) for the prompt-based systems


SPLITS = ("train", "selection", "evaluation")
SST5_LABELS = ["very negative", "negative", "neutral", "positive", "very positive"]
TFN_LABELS = ["bearish", "bullish", "neutral"]


def _table(path: Path, text: str, label: str, names: list[str], **reader) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, **reader))
    return [{"text": row[text].strip(), "label": names[int(row[label])]} for row in rows]


def _held_out(rows: list[dict], size: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Split `size` rows off a shuffled copy of `rows`, so selection never sees training examples."""
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    return shuffled[size:], shuffled[:size]


def _sst2(root: Path) -> dict[str, list[dict]]:
    names = ["negative", "positive"]
    train = _table(
        root / "sst2/train.tsv", "sentence", "label", names, delimiter="\t", quoting=csv.QUOTE_NONE
    )
    train, selection = _held_out(train, 2000)
    dev = _table(root / "sst2/dev.tsv", "sentence", "label", names, delimiter="\t", quoting=csv.QUOTE_NONE)
    return {"train": train, "selection": selection, "evaluation": dev}


_PTB_BRACKETS = {"-LRB-": "(", "-RRB-": ")"}


def _sst5_file(path: Path) -> list[dict]:
    """Each line is a PTB tree: the root label follows the first '(' and the leaves are the sentence."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            leaves = re.findall(r"\(\d ([^()\s]+)\)", line)
            text = " ".join(_PTB_BRACKETS.get(leaf, leaf) for leaf in leaves)
            rows.append({"text": text, "label": SST5_LABELS[int(line[1])]})
    return rows


def _sst5(root: Path) -> dict[str, list[dict]]:
    return {
        "train": _sst5_file(root / "sst5/train.txt"),
        "selection": _sst5_file(root / "sst5/dev.txt"),
        "evaluation": _sst5_file(root / "sst5/test.txt"),
    }


def _twitter_financial(root: Path) -> dict[str, list[dict]]:
    folder = root / "twitter_financial_news_sentiment"
    train, selection = _held_out(_table(folder / "sent_train.csv", "text", "label", TFN_LABELS), 2000)
    valid = _table(folder / "sent_valid.csv", "text", "label", TFN_LABELS)
    return {"train": train, "selection": selection, "evaluation": valid}


def _conll_rows(path: Path) -> list[dict]:
    return [{"tokens": e.tokens, "tags": e.tags} for e in read_token_examples(path)]


def _conll2003(root: Path) -> dict[str, list[dict]]:
    return {
        split: _conll_rows(root / f"conll2003/{name}.txt")
        for split, name in zip(SPLITS, ("train", "valid", "test"), strict=True)
    }


def _wnut17(root: Path) -> dict[str, list[dict]]:
    files = ("wnut17train.conll", "emerging.dev.conll", "emerging.test.annotated")
    return {split: _conll_rows(root / "wnut17" / name) for split, name in zip(SPLITS, files, strict=True)}


SENTIMENT = "Classify the sentiment of this movie review."
TASKS = {
    task.name: task
    for task in (
        Task(
            "sst2",
            "sequence",
            "accuracy",
            "dev",
            Budget(500, 200, 2, 128),
            _sst2,
            SENTIMENT,
            {"negative": "negative", "positive": "positive"},
        ),
        Task(
            "sst5",
            "sequence",
            "accuracy",
            "test",
            Budget(500, 200, 2, 128),
            _sst5,
            SENTIMENT,
            dict(zip(SST5_LABELS, ("terrible", "bad", "neutral", "good", "great"), strict=True)),
        ),
        Task(
            "twitter_fin",
            "sequence",
            "macro_f1",
            "valid",
            Budget(500, 200, 2, 128),
            _twitter_financial,
            "Classify the market sentiment of this financial tweet.",
            {"bearish": "bearish", "bullish": "bullish", "neutral": "neutral"},
        ),
        Task("conll2003", "token", "f1", "test", Budget(800, 200, 2, 128), _conll2003),
        Task("wnut17", "token", "f1", "test", Budget(500, 200, 2, 128), _wnut17),
    )
}


def _subsample(rows: list[dict], size: int, seed: int) -> list[dict]:
    if size >= len(rows):
        return rows
    return random.Random(seed).sample(rows, size)


# How many times the budget's training examples each tier trains on; None: the whole training split.
TIERS: dict[str, float | None] = {"base": 1, "large": 4, "full": None}


def prepare(
    task: Task, data_dir: Path, work_dir: Path, seed: int, scale: float = 1.0, tier: str = "base"
) -> dict[str, Path]:
    """Write the task's three splits as JSONL under `work_dir` (once) and return their paths.

    `scale` shrinks the training and selection subsamples and the evaluation split, for smoke runs;
    `tier` multiplies the training examples (large: 4x) or takes them all (full).
    """
    suffix = "" if tier == "base" else f"-{tier}"
    folder = work_dir / f"{task.name}-seed{seed}-scale{scale:g}{suffix}"
    paths = {split: folder / f"{split}.jsonl" for split in SPLITS}
    if all(path.exists() for path in paths.values()):
        return paths
    if not data_dir.is_dir():
        raise SystemExit(f"bench: no dataset folder at {data_dir}; pass --data pointing at shared/datasets")
    rows = task.load(data_dir)
    sizes = {
        "train": round(task.budget.train_examples * scale * TIERS[tier])
        if TIERS[tier]
        else round(len(rows["train"]) * scale),
        "selection": round(task.budget.selection_examples * scale),
        "evaluation": len(rows["evaluation"]) if scale >= 1 else round(len(rows["evaluation"]) * scale),
    }
    for split in SPLITS:
        chosen = _subsample(rows[split], sizes[split], seed)
        write_text_atomic(paths[split], "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in chosen))
    return paths
