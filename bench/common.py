"""What every system in the accuracy benchmark shares: the settings, the data reading and the labels."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.datasets import Task

SMOLLM2 = "smollm2-135m"
ROOT = Path(__file__).resolve().parents[1]


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


def run_child(
    module: str, argv: list[str], one: list[str], log: Path, env: dict | None = None
) -> tuple[bool, float]:
    """Run `python -m MODULE ARGV --one ONE` in a process of its own (its own peak memory, and a crash
    loses only this job), its output in `log`; whether it succeeded, and the seconds it took."""
    with log.open("w") as handle:
        child, seconds = timed(
            lambda: subprocess.run(
                [sys.executable, "-m", module, *argv, "--one", *one],
                cwd=ROOT,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
    return child.returncode == 0, seconds
