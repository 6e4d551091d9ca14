"""What every system in the accuracy benchmark shares: the settings, the data reading and the labels."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.datasets import Task

SMOLLM2 = "smollm2-135m"


@dataclass(frozen=True)
class Settings:
    """One set of hyperparameters for every LoRA system, so they differ only in the method."""

    seed: int = 0
    batch_size: int = 16
    learning_rate: float = 5e-4  # LoRA systems
    encoder_learning_rate: float = 1e-4  # the fully fine-tuned encoder
    lora_r: int = 12
    lora_alpha: float = 32.0
    lora_dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


def read_jsonl(path: Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def task_labels(task: Task, paths: dict[str, Path]) -> list[str]:
    """All labels of a task over all its splits, in a fixed order, so every system uses the same ids."""
    rows = [row for split in paths.values() for row in read_jsonl(split)]
    if task.kind == "sequence":
        found = {row["label"] for row in rows}
        return [label for label in task.label_words if label in found] if task.label_words else sorted(found)
    types = sorted({tag[2:] for row in rows for tag in row["tags"] if tag != "O"})
    return ["O", *(f"{prefix}-{name}" for name in types for prefix in ("B", "I"))]


def timed(work: Callable[[], Any]) -> tuple[Any, float]:
    """Run `work` and return its result with the wall-clock seconds it took."""
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started
