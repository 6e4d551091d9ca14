"""A training run killed with SIGKILL at any point, then run again with --resume, ends exactly where an
uninterrupted run with the same seed ends: the same best checkpoint, metrics and weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from lsllm.checkpoints import MANIFEST, checkpoints
from lsllm.cli import main
from tests.helpers import sentiment_rows, write_splits

# 32 examples in batches of 8: 4 steps an epoch, 3 epochs; evaluation and a checkpoint every 3 steps, so
# checkpoints fall mid-epoch and resuming must restore the data order inside an epoch too.
OPTIONS = [
    "--precision",
    "fp32",
    "--epochs",
    "3",
    "--batch-size",
    "8",
    "--eval-steps",
    "3",
    "--learning-rate",
    "3e-3",
    "--lora-r",
    "4",
    "--max-length",
    "32",
    "--logging-steps",
    "1",
]

# Runs `lsllm train` and kills itself (SIGKILL: no cleanup, no atexit) at the chosen moment.
KILLED_RUN = """
import io, os, signal, sys
import torch, transformers
import lsllm.inference
from lsllm.cli import main

point, at, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
calls = 0

def count() -> bool:
    global calls
    calls += 1
    return calls == at

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point == "step":  # after the forward and backward pass, before the optimiser step
    original_step = transformers.Trainer.training_step
    def training_step(self, *args, **kwargs):
        loss = original_step(self, *args, **kwargs)
        if count():
            die()
        return loss
    transformers.Trainer.training_step = training_step
elif point == "evaluation":  # inside an evaluation on the dev set
    original_eval = transformers.Trainer.prediction_step
    def prediction_step(self, *args, **kwargs):
        if count():
            die()
        return original_eval(self, *args, **kwargs)
    transformers.Trainer.prediction_step = prediction_step
elif point == "checkpoint":  # halfway through writing a checkpoint file
    original_save = torch.save
    def save(obj, f, *args, **kwargs):
        if count():
            buffer = io.BytesIO()
            original_save(obj, buffer, *args, **kwargs)
            with open(f, "wb") as handle:
                handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            die()
        return original_save(obj, f, *args, **kwargs)
    torch.save = save
elif point == "final":  # after training, while the saved run is scored (dev first, then test)
    original_outcomes = lsllm.inference.Classifier.outcomes
    def outcomes(self, *args, **kwargs):
        if count():
            die()
        return original_outcomes(self, *args, **kwargs)
    lsllm.inference.Classifier.outcomes = outcomes
sys.exit(main(argv))
"""


def train_argv(model, files: dict, output: Path) -> list[str]:
    splits = [arg for split, path in files.items() for arg in (f"--{split}", str(path))]
    return ["train", "--model", str(model), "--task", "sequence", *splits, "--output", str(output), *OPTIONS]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_splits(tmp_path_factory.mktemp("data"), sentiment_rows, {"train": 32, "dev": 12, "test": 12})


@pytest.fixture(scope="module")
def uninterrupted(tiny_model, data, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("reference") / "run"
    assert main(train_argv(tiny_model, data, output)) == 0
    return output


def outcome(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "dev": metrics["dev"],
        "test": metrics["test"],
        "best": Path(metrics["best_checkpoint"]).name,
        "weights": {k: v.tolist() for k, v in load_file(run / "adapter_model.safetensors").items()},
        "losses": [
            r["loss"]
            for r in map(json.loads, (run / "training_log.jsonl").read_text().splitlines())
            if "loss" in r
        ],
    }


@pytest.mark.parametrize(
    ("point", "at"),
    [("step", 5), ("step", 10), ("evaluation", 3), ("checkpoint", 6), ("final", 2)],
    ids=["mid-epoch-step", "late-step", "evaluation", "checkpoint-writing", "after-training"],
)
def test_a_killed_run_resumes_to_the_uninterrupted_result(
    tiny_model, data, uninterrupted, tmp_path, point, at
):
    output = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, point, str(at), *train_argv(tiny_model, data, output)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (output / "metrics.json").exists()
    assert main([*train_argv(tiny_model, data, output), "--resume"]) == 0
    assert outcome(output) == outcome(uninterrupted)


def test_a_checkpoint_killed_while_written_is_skipped_with_a_warning(tiny_model, data, tmp_path, caplog):
    output = tmp_path / "run"
    argv = train_argv(tiny_model, data, output)
    subprocess.run([sys.executable, "-c", KILLED_RUN, "checkpoint", "6", *argv], capture_output=True)
    partial, whole = checkpoints(output / "checkpoints")
    assert (partial.name, whole.name) == ("checkpoint-6", "checkpoint-3")
    assert not (partial / MANIFEST).exists() and (whole / MANIFEST).exists()
    assert main([*argv, "--resume"]) == 0
    assert f"skipping {partial}: it was never completed (the run stopped while writing it)" in caplog.text


@pytest.mark.parametrize("harm", ["truncated", "flipped"])
def test_a_damaged_checkpoint_is_detected_and_resume_falls_back(
    uninterrupted, tmp_path, caplog, tiny_model, data, harm
):
    import shutil

    output = tmp_path / "run"
    shutil.copytree(uninterrupted, output)
    newest = checkpoints(output / "checkpoints")[0]
    weights = newest / "adapter_model.safetensors"
    content = weights.read_bytes()
    if harm == "truncated":
        weights.write_bytes(content[: len(content) // 3])
    else:
        weights.write_bytes(content[:-8] + bytes(b ^ 0xFF for b in content[-8:]))
    (output / "metrics.json").unlink()
    assert main([*train_argv(tiny_model, data, output), "--resume"]) == 0
    reason = "is truncated (" if harm == "truncated" else "is corrupt (its checksum differs)"
    assert f"skipping {newest}: adapter_model.safetensors {reason}" in caplog.text
    assert outcome(output) == outcome(uninterrupted)
