"""Builders shared by several test files."""

from __future__ import annotations

from pathlib import Path

import torch

from lsllm.config import TrainConfig
from lsllm.data.encoding import Encoder
from lsllm.data.labels import LabelMap
from lsllm.data.task import TaskData
from lsllm.inference import Classifier
from lsllm.modeling import add_lora, build_model
from lsllm.models import load_tokenizer
from lsllm.run import RunFolder

SEQUENCE_LABELS = ["neg", "pos", "neutral"]
TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def lora_model(model_path, task: str, attention: str, pooling: str = "last", seed: int = 0):
    """A run's config, labels and a LoRA-wrapped model with a random head, as training starts them."""
    config = TrainConfig(model=str(model_path), task=task, attention=attention, pooling=pooling, lora_r=4)
    labels = LabelMap.from_names(SEQUENCE_LABELS if task == "sequence" else TAGS)
    torch.manual_seed(seed)
    return config, labels, add_lora(build_model(config, len(labels)), 4, 8, 0.0, None)


def untrained_classifier(
    model_path,
    task: str,
    attention: str,
    pooling: str = "last",
    padding_side: str | None = None,
    seed: int = 0,
) -> Classifier:
    """A classifier with a random head: enough to test what the method computes, without training."""
    config, labels, model = lora_model(model_path, task, attention, pooling, seed)
    tokenizer = load_tokenizer(str(model_path))
    if padding_side:
        tokenizer.padding_side = padding_side
    return Classifier(model, tokenizer, TaskData(config, labels, Encoder(tokenizer, config.max_length)))


def saved_run(model_path, folder, task: str, attention: str, pooling: str = "last") -> Path:
    """A run folder as training leaves it, with non-zero LoRA weights (so merging them changes the model)."""
    config, labels, model = lora_model(model_path, task, attention, pooling)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.5)
    run = RunFolder(Path(folder))
    run.prepare_for_training(resume=False)
    run.save_setup(config, labels, load_tokenizer(str(model_path)))
    run.save_weights(model)
    return run.path
