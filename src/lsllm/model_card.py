"""The README.md of an export: what the model is, how it was trained, how well it did, how to load it."""

from __future__ import annotations

from lsllm.config import TrainConfig


def _percent(scores: dict, key: str) -> str:
    return f"{100 * scores[key]:.1f}" if key in scores else "n/a"


def model_card(settings: TrainConfig, labels: list[str], metrics: dict, lora: dict, merged: bool) -> str:
    """A README that says what the model is, how it was trained, how well it did and how to load it."""
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
    how = "merged into the weights" if merged else "kept apart from the weights (loading needs peft)"
    table = ["| split | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys), *rows, ""]
    return "\n".join(
        [
            "---",
            "library_name: transformers",
            f"pipeline_tag: {pipeline}",
            f"tags: [lsllm, label-supervised, {'lora-merged' if merged else 'lora'}]",
            "---",
            "",
            f"# {settings.task} classifier trained with lsllm",
            "",
            f"- Base model: `{settings.model}`",
            f"- Task: {settings.task} classification, {len(labels)} labels: {', '.join(labels)}",
            f"- Attention: {settings.attention}"
            + (f"; pooling: {settings.pooling}" if settings.task == "sequence" else ""),
            f"- Training data: `{settings.train}`; model selected on `{settings.dev}`",
            f"- LoRA r={lora['r']}, alpha={lora['lora_alpha']:g}, dropout={lora['lora_dropout']:g}"
            f" on {', '.join(lora['target_modules'])}; {how}",
            f"- {settings.epochs:g} epochs at learning rate {settings.learning_rate:g}",
            "",
            *(table if rows else []),
            "## Use",
            "",
            "With lsllm installed, as `lsllm predict path/to/this/folder ...` or:",
            "",
            "```python",
            "import lsllm",
            "",
            'model = lsllm.load("path/to/this/folder")',
            "```",
            "",
            "With plain transformers, once lsllm is imported (no `trust_remote_code` needed):",
            "",
            "```python",
            "import lsllm  # registers the model type with transformers",
            f"from transformers import {kind}, pipeline",
            "",
            f'model = {kind}.from_pretrained("path/to/this/folder")',
            f'classify = pipeline("{pipeline}", model="path/to/this/folder")',
            "```",
            "",
        ]
    )
