"""`lsllm export`: a trained run as one self-contained folder that plain transformers can load.

The LoRA weights are folded into the backbone, so the folder needs neither peft nor the base model.
It holds the transformers model (config.json + model.safetensors), the tokenizer, lsllm's own run
config and labels (so `lsllm.load` reads it too) and a model card.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from lsllm.atomic import write_text_atomic
from lsllm.hf_model import HF_CLASSES, LsllmConfig
from lsllm.inference import Classifier
from lsllm.run import CONFIG, LABELS, METRICS, RunFolder

MODEL_CARD = "README.md"


def export_merged(run_dir: str | Path, output: str | Path) -> Path:
    """Write the run at `run_dir` to `output` with LoRA merged; the folder appears only when complete."""
    run, output = RunFolder(Path(run_dir)), Path(output)
    classifier = Classifier.load(run.path, device="cpu")
    settings, labels = classifier.data.config, classifier.labels
    names = [str(label) for label in labels]
    config = LsllmConfig(
        backbone=classifier.model.backbone.config.to_dict(),
        task=settings.task,
        attention=settings.attention,
        pooling=settings.pooling,
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
    )
    model = HF_CLASSES[settings.task](config)
    model.lsllm.load_state_dict(classifier.model.state_dict())
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        model.save_pretrained(staging)
        classifier.tokenizer.save_pretrained(staging)
        for name in (CONFIG, LABELS):
            shutil.copy(run.path / name, staging / name)
        metrics = run.path / METRICS
        scores = json.loads(metrics.read_text(encoding="utf-8")) if metrics.exists() else {}
        write_text_atomic(staging / MODEL_CARD, model_card(settings, names, scores))
        if output.exists():
            shutil.rmtree(output)
        os.replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def _percent(scores: dict, key: str) -> str:
    return f"{100 * scores[key]:.1f}" if key in scores else "n/a"


def model_card(settings, labels: list[str], metrics: dict) -> str:
    """A README that says what the model is, how it was trained and how well it did."""
    keys = ("accuracy", "macro_f1") if settings.task == "sequence" else ("precision", "recall", "f1")
    rows = [
        f"| {split} | " + " | ".join(_percent(metrics[split], key) for key in keys) + " |"
        for split in ("dev", "test")
        if split in metrics
    ]
    kind = (
        "AutoModelForSequenceClassification"
        if settings.task == "sequence"
        else "AutoModelForTokenClassification"
    )
    pipeline = "text-classification" if settings.task == "sequence" else "token-classification"
    return "\n".join(
        [
            "---",
            "library_name: transformers",
            f"pipeline_tag: {pipeline}",
            "tags: [lsllm, label-supervised, lora-merged]",
            "---",
            "",
            f"# {settings.task} classifier trained with lsllm",
            "",
            f"- Base model: `{settings.model}`",
            f"- Task: {settings.task} classification, {len(labels)} labels: {', '.join(labels)}",
            f"- Attention: {settings.attention}"
            + (f"; pooling: {settings.pooling}" if settings.task == "sequence" else ""),
            f"- Training data: `{settings.train}`; model selected on `{settings.dev}`",
            f"- LoRA r={settings.lora_r}, alpha={settings.lora_alpha:g}, dropout={settings.lora_dropout:g},"
            " merged into the weights",
            f"- {settings.epochs:g} epochs at learning rate {settings.learning_rate:g}",
            "",
            "| split | " + " | ".join(keys) + " |",
            "| --- |" + " --- |" * len(keys),
            *rows,
            "",
            "## Use",
            "",
            "```python",
            "import lsllm  # registers the model type with transformers; no trust_remote_code needed",
            f"from transformers import {kind}, pipeline",
            "",
            f'classify = pipeline("{pipeline}", model="path/to/this/folder")',
            "```",
            "",
        ]
    )
