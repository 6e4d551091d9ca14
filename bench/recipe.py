"""The Trainer recipe the transformers-based baselines share, so they differ only in what they model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import TrainingArguments

from bench.common import Settings, precision
from bench.datasets import Task

# Every linear layer of a Llama-style block, as lsllm adapts by default. ("all-linear" would also wrap
# the token-classification head, which peft then refuses to train fully.)
DECODER_LINEAR_LAYERS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lsllm_config(
    model: str,
    task: Task,
    paths,
    labels: list[str],
    settings: Settings,
    output: Path,
    attention: str,
    pooling: str,
):
    """lsllm's TrainConfig for the shared budget and settings: what the benchmarks run lsllm with."""
    from lsllm import TrainConfig

    return TrainConfig(
        model=model,
        task=task.kind,
        train=str(paths["train"]),
        dev=str(paths["selection"]),
        output=str(output),
        attention=attention,
        pooling=pooling,
        labels=labels,
        max_length=task.budget.max_length,
        epochs=task.budget.epochs,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        lora_r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        seed=settings.seed,
        save_total_limit=1,
    )


def with_lora(model, settings: Settings, task_type: str):
    """The model with the benchmark's LoRA on every decoder linear layer; peft trains the head in full."""
    config = LoraConfig(
        task_type=task_type,
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=DECODER_LINEAR_LAYERS,
    )
    return get_peft_model(model, config)


def training_arguments(
    task: Task, settings: Settings, work_dir: Path, learning_rate: float, metric: str, **extra: Any
) -> TrainingArguments:
    """Trainer defaults plus the shared budget: epochs, batch, seed, best epoch on the selection split,
    under bf16 autocast where lsllm trains in bf16 (so equal-time comparisons are fair)."""
    extra.setdefault("bf16", precision() == "bf16")
    return TrainingArguments(
        output_dir=str(work_dir / "checkpoints"),
        num_train_epochs=task.budget.epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=settings.batch_size,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        logging_steps=10,
        seed=settings.seed,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),  # else transformers refuses bf16 on any CPU
        **extra,
    )
