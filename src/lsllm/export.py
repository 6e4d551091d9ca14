"""`lsllm export`: a trained run as one self-contained folder that plain transformers can load.

The folder holds the transformers model (config.json + model.safetensors: backbone, LoRA and head), the
tokenizer, lsllm's own run config and labels (so `lsllm.load` reads it too) and a model card. Merged,
LoRA is folded into the backbone's weights and loading needs no peft; unmerged, the LoRA weights are
kept apart, as trained, and peft rebuilds the LoRA layers on load. Either way the base model is not needed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from peft import PeftModel

from lsllm import _compat
from lsllm.artifacts import CONFIG, LABELS, METRICS, ExportFolder, is_export, open_trained
from lsllm.atomic import swap_in_dir, write_text_atomic
from lsllm.errors import LsllmError
from lsllm.model_card import model_card
from lsllm.modeling.hf import HF_CLASSES, LsllmConfig

MODEL_CARD = "README.md"


def export_run(run_dir: str | Path, output: str | Path, merge: bool = False) -> Path:
    """Write the run at `run_dir` to `output`, LoRA merged or kept apart; the folder appears when complete."""
    run, output = open_trained(run_dir), Path(output)
    if isinstance(run, ExportFolder):
        raise LsllmError(f"{run.path} is an export already; pass the run folder written by 'lsllm train'")
    if output.exists() and not (output.is_dir() and (is_export(output) or not any(output.iterdir()))):
        raise LsllmError(
            f"{output} exists and is not an lsllm export, so it is not replaced; choose a new --output"
        )
    settings, labels = run.load_config(), run.load_labels()
    trained = run.load_adapted(settings, len(labels))
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
        bidirectional_layers=settings.bidirectional_layers,
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
        run.load_tokenizer().save_pretrained(staging)
        for name in (CONFIG, LABELS):
            shutil.copy(run.path / name, staging / name)
        metrics = run.path / METRICS
        scores = json.loads(metrics.read_text(encoding="utf-8")) if metrics.exists() else {}
        write_text_atomic(staging / MODEL_CARD, model_card(settings, names, scores, lora, merge))
        swap_in_dir(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def _plain_weights(trained: PeftModel) -> dict[str, torch.Tensor]:
    """The run's weights named as in `LabelSupervisedModel` with LoRA injected into its backbone.

    The backbone's names already match (the same adapter name, "default"); peft's wrapper around the
    head holds the trained head and an untrained original, so only the trained one is kept.
    """
    weights = {}
    for key, value in trained.get_base_model().state_dict().items():
        if key.startswith("head."):
            if not key.startswith(_compat.TRAINED_HEAD_PREFIX):
                continue
            key = "head." + key.removeprefix(_compat.TRAINED_HEAD_PREFIX)
        weights[key] = value
    return weights
