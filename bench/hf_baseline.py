"""The usual recipe, written straight against transformers + peft: AutoModelFor*Classification and Trainer.

It serves two baselines: the same decoder with LoRA (what a user would do instead of lsllm) and a
fully fine-tuned encoder (the paper's BERT baseline, at our scale). Default Trainer settings otherwise.
"""

from __future__ import annotations

import bisect
import itertools
import time
from pathlib import Path

import numpy as np
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from bench.common import Settings, read_jsonl
from bench.datasets import Task
from lsllm.metrics import sequence_metrics, token_metrics

IGNORE = -100
# Every linear layer of a Llama-style block, as lsllm adapts by default. ("all-linear" would also wrap
# the token-classification head, which peft then refuses to train fully.)
DECODER_LINEAR_LAYERS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _word_token_labels(tokenizer, words: list[str], tags: list[int], max_length: int) -> dict:
    """Tokenise the space-joined sentence and label each word's first token.

    `is_split_into_words=True` would drop the space before every word with this byte-level tokenizer
    (transformers 5), which handicaps the decoder; joining with spaces gives it the text it was trained on.
    """
    starts = list(itertools.accumulate((len(word) + 1 for word in words[:-1]), initial=0))
    encoded = tokenizer(" ".join(words), truncation=True, max_length=max_length, return_offsets_mapping=True)
    labels, seen = [], set()
    for start, end in encoded.pop("offset_mapping"):
        word = bisect.bisect_right(starts, end - 1) - 1  # a token's last character is inside its word
        if end == start or word in seen:
            labels.append(IGNORE)
        else:
            seen.add(word)
            labels.append(tags[word])
    encoded["labels"] = labels
    return encoded


def _encode(task: Task, tokenizer, rows: list[dict], label_ids: dict, max_length: int) -> list[dict]:
    if task.kind == "sequence":
        return [
            {
                **tokenizer(row["text"], truncation=True, max_length=max_length),
                "labels": label_ids[row["label"]],
            }
            for row in rows
        ]
    return [
        dict(_word_token_labels(tokenizer, row["tokens"], [label_ids[t] for t in row["tags"]], max_length))
        for row in rows
    ]


def _word_predictions(logits: np.ndarray, labels: np.ndarray, n_words: int, names: list[str]) -> list[str]:
    """Tags for the words of one sentence: the first token's argmax; words cut off by truncation get O."""
    tags = [names[i] for i in logits.argmax(-1)[labels != IGNORE]]
    return tags + ["O"] * (n_words - len(tags))


def _metrics(task: Task, names: list[str], rows: list[dict], output) -> dict:
    if task.kind == "sequence":
        gold = [names.index(row["label"]) for row in rows]
        return sequence_metrics(gold, output.predictions.argmax(-1).tolist(), names)
    predicted = [
        _word_predictions(logits, labels, len(row["tokens"]), names)
        for logits, labels, row in zip(output.predictions, output.label_ids, rows, strict=True)
    ]
    return token_metrics([row["tags"] for row in rows], predicted)


def _selection_metrics(task: Task, names: list[str]):
    def compute(output) -> dict:
        predicted, gold = output.predictions.argmax(-1), output.label_ids
        if task.kind == "sequence":
            return {task.metric: sequence_metrics(gold.tolist(), predicted.tolist(), names)[task.metric]}
        keep = gold != IGNORE
        gold_tags = [[names[i] for i in row[k]] for row, k in zip(gold, keep, strict=True)]
        predicted_tags = [[names[i] for i in row[k]] for row, k in zip(predicted, keep, strict=True)]
        return {"f1": token_metrics(gold_tags, predicted_tags)["f1"]}

    return compute


def run(
    task: Task,
    paths: dict[str, Path],
    labels: list[str],
    model_path: str,
    settings: Settings,
    work_dir: Path,
    lora: bool,
) -> dict:
    """Train on the training split, select on the selection split, evaluate once on the evaluation split."""
    label_ids = {name: i for i, name in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    auto = AutoModelForSequenceClassification if task.kind == "sequence" else AutoModelForTokenClassification
    model = auto.from_pretrained(
        model_path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label_ids,
        pad_token_id=tokenizer.pad_token_id,
    )
    if lora:
        kind = "SEQ_CLS" if task.kind == "sequence" else "TOKEN_CLS"
        model = get_peft_model(
            model,
            LoraConfig(
                task_type=kind,
                r=settings.lora_r,
                lora_alpha=settings.lora_alpha,
                lora_dropout=settings.lora_dropout,
                target_modules=DECODER_LINEAR_LAYERS,
            ),
        )
    rows = {split: read_jsonl(path) for split, path in paths.items()}
    encoded = {
        split: _encode(task, tokenizer, r, label_ids, task.budget.max_length) for split, r in rows.items()
    }
    collator = (DataCollatorWithPadding if task.kind == "sequence" else DataCollatorForTokenClassification)(
        tokenizer
    )
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(work_dir / "checkpoints"),
            num_train_epochs=task.budget.epochs,
            learning_rate=settings.learning_rate if lora else settings.encoder_learning_rate,
            per_device_train_batch_size=settings.batch_size,
            eval_strategy="epoch",
            save_strategy="epoch",
            save_total_limit=1,
            load_best_model_at_end=True,
            metric_for_best_model="f1" if task.kind == "token" else task.metric,
            logging_steps=10,
            seed=settings.seed,
            report_to="none",
        ),
        train_dataset=encoded["train"],
        eval_dataset=encoded["selection"],
        data_collator=collator,
        compute_metrics=_selection_metrics(task, labels),
    )
    started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    output = trainer.predict(encoded["evaluation"])
    eval_seconds = time.perf_counter() - started
    return {
        "metrics": _metrics(task, labels, rows["evaluation"], output),
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "history": trainer.state.log_history,
    }
