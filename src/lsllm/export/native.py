"""The lsllm format: lsllm's own transformers model type, which carries every run.

config.json + model.safetensors hold the backbone, the head and, unless merged, the LoRA weights exactly
as trained (peft rebuilds the LoRA layers on load). Plain transformers loads it once lsllm is imported.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel

from lsllm import _compat
from lsllm.config import TrainConfig
from lsllm.modeling.hf import HF_CLASSES, PROBLEM_TYPES, LsllmConfig


def write_lsllm_model(
    trained: PeftModel, settings: TrainConfig, names: list[str], lora: dict, merge: bool, folder: Path
) -> list[str]:
    """Save the run's model into `folder` as lsllm's model type; nothing to note."""
    config = LsllmConfig(
        backbone=trained.get_base_model().backbone.config.to_dict(),
        task=settings.task,
        attention=settings.attention,
        pooling=settings.pooling,
        lora=lora,
        bidirectional_layers=settings.bidirectional_layers,
        head_bias=settings.head_bias,
        problem_type=PROBLEM_TYPES[trained.get_base_model().shape],
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
    )
    model = HF_CLASSES[settings.task](config)
    model.lsllm.load_state_dict(_plain_weights(trained))  # strict: every name must match
    if merge:
        model.merge_lora()
    model.save_pretrained(folder)
    return []


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
