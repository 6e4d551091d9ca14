"""`lsllm export`: a trained run as one self-contained folder that plain transformers can load.

The folder holds the transformers model (config.json + model.safetensors: backbone, LoRA and head), the
tokenizer, lsllm's own run config and labels (so `lsllm.load` reads it too) and a model card. Merged,
LoRA is folded into the backbone's weights and loading needs no peft; unmerged, the LoRA weights are
kept apart, as trained, and peft rebuilds the LoRA layers on load. Either way the base model is not needed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from peft import PeftModel

from lsllm.atomic import write_text_atomic
from lsllm.attention import check_attention
from lsllm.config import TrainConfig
from lsllm.errors import LsllmError, first_line
from lsllm.hf_model import HF_CLASSES, MODEL_TYPE, LsllmConfig
from lsllm.modeling import LabelSupervisedModel
from lsllm.models import load_tokenizer
from lsllm.run import CONFIG, LABELS, METRICS, RunFolder

HF_CONFIG = "config.json"
MODEL_CARD = "README.md"
TOKENIZER_CONFIG = "tokenizer_config.json"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # one file, or shards and their index
# peft wraps the fully trained head; its trained copy is kept under this adapter's name.
_TRAINED_HEAD = "head.modules_to_save.default."


def export_run(run_dir: str | Path, output: str | Path, merge: bool = False) -> Path:
    """Write the run at `run_dir` to `output`, LoRA merged or kept apart; the folder appears when complete."""
    run, output = open_trained(run_dir), Path(output)
    if isinstance(run, ExportFolder):
        raise LsllmError(f"{run.path} is an export already; pass the run folder written by 'lsllm train'")
    if output.exists() and not (output.is_dir() and (_is_export(output) or not any(output.iterdir()))):
        raise LsllmError(
            f"{output} exists and is not an lsllm export, so it is not replaced; choose a new --output"
        )
    settings, labels = run.load_config(), run.load_labels()
    trained = run.load_model(settings, len(labels))
    names = [str(label) for label in labels.names]
    adapter = trained.peft_config["default"]
    lora = {
        "r": adapter.r,
        "lora_alpha": adapter.lora_alpha,
        "lora_dropout": adapter.lora_dropout,
        "target_modules": sorted(adapter.target_modules),
    }
    config = LsllmConfig(
        backbone=trained.get_base_model().backbone.config.to_dict(),
        task=settings.task,
        attention=settings.attention,
        pooling=settings.pooling,
        lora=lora,
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
    )
    model = HF_CLASSES[settings.task](config)
    model.lsllm.load_state_dict(_plain_weights(trained))  # strict: every name must match
    if merge:
        model.merge_lora()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        model.save_pretrained(staging)
        load_tokenizer(str(run.tokenizer_path)).save_pretrained(staging)
        for name in (CONFIG, LABELS):
            shutil.copy(run.path / name, staging / name)
        metrics = run.path / METRICS
        scores = json.loads(metrics.read_text(encoding="utf-8")) if metrics.exists() else {}
        write_text_atomic(staging / MODEL_CARD, model_card(settings, names, scores, lora, merge))
        if output.exists():
            shutil.rmtree(output)
        os.replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def _model_type(path: Path):
    """The model_type in the folder's config.json; raises OSError or ValueError if it cannot be read."""
    values = json.loads((path / HF_CONFIG).read_text(encoding="utf-8"))
    if not isinstance(values, dict):
        raise ValueError(f"{HF_CONFIG} holds no JSON object")
    return values.get("model_type")


def _is_export(path: Path) -> bool:
    try:
        return _model_type(path) == MODEL_TYPE
    except (OSError, ValueError):
        return False


def _plain_weights(trained: PeftModel) -> dict[str, torch.Tensor]:
    """The run's weights named as in `LabelSupervisedModel` with LoRA injected into its backbone.

    The backbone's names already match (the same adapter name, "default"); peft's wrapper around the
    head holds the trained head and an untrained original, so only the trained one is kept.
    """
    weights = {}
    for key, value in trained.get_base_model().state_dict().items():
        if key.startswith("head."):
            if not key.startswith(_TRAINED_HEAD):
                continue
            key = "head." + key.removeprefix(_TRAINED_HEAD)
        weights[key] = value
    return weights


class ExportFolder(RunFolder):
    """A folder written by `lsllm export`; it reads like a run folder (same config.yaml and labels.json)."""

    @property
    def tokenizer_path(self) -> Path:
        return self.path

    def check(self) -> None:
        """Make sure this is a complete lsllm export before anything heavy is loaded."""
        try:
            model_type = _model_type(self.path)
        except (OSError, ValueError) as error:
            raise LsllmError(
                f"cannot read {self.path / HF_CONFIG} ({first_line(error)}); "
                "export the run again with 'lsllm export'"
            ) from None
        if model_type != MODEL_TYPE:
            raise LsllmError(
                f"{self.path} is neither an lsllm run folder nor an export (its {HF_CONFIG} is for model "
                f"type {model_type!r}); pass the --output folder of 'lsllm train' or 'lsllm export'"
            )
        missing = [name for name in (CONFIG, LABELS, TOKENIZER_CONFIG) if not (self.path / name).exists()]
        if not any((self.path / name).exists() for name in WEIGHTS):
            missing.append(WEIGHTS[0])
        if missing:
            raise LsllmError(
                f"{self.path} is not a complete lsllm export (missing {', '.join(missing)}); "
                "export the run again with 'lsllm export'"
            )

    def load_model(self, config: TrainConfig, num_labels: int) -> LabelSupervisedModel:
        """The exported model with any LoRA layers merged (faster), its attention mode checked."""
        try:
            exported, info = HF_CLASSES[config.task].from_pretrained(
                self.path, dtype=torch.float32, output_loading_info=True
            )
            # transformers starts missing weights from random values; a prediction from those is wrong
            unmatched = sorted(info["missing_keys"] | info["unexpected_keys"])
            if unmatched:
                raise ValueError(f"{len(unmatched)} weight names do not match the model, e.g. {unmatched[0]}")
        except Exception as error:  # safetensors, shape and key errors all mean the same thing here
            raise LsllmError(
                f"cannot load the weights in {self.path} ({first_line(error)}); "
                "the export is corrupt or from an incompatible lsllm or peft version, "
                "export the run again with 'lsllm export'"
            ) from None
        if exported.config.num_labels != num_labels:
            raise LsllmError(
                f"{self.path / HF_CONFIG} has {exported.config.num_labels} labels but {LABELS} has "
                f"{num_labels}; export the run again with 'lsllm export'"
            )
        exported.merge_lora()
        model = exported.lsllm
        check_attention(model.backbone, config.attention, model.config.vocab_size)
        return model


def open_trained(path: str | Path) -> RunFolder:
    """The run folder or export folder at `path`, checked to be complete."""
    path = Path(path)
    folder = ExportFolder(path) if (path / HF_CONFIG).exists() else RunFolder(path)
    folder.check()
    return folder


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
