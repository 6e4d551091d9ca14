"""The usual recipe, written straight against transformers + peft: AutoModelFor*Classification and Trainer.

It serves two baselines: the same decoder with LoRA (what a user would do instead of lsllm) and a
fully fine-tuned encoder (the paper's BERT baseline, at our scale). Default Trainer settings otherwise.
"""

from __future__ import annotations

import bisect
import itertools
from pathlib import Path

import numpy as np
from transformers import (
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
)

from bench.common import Settings, read_jsonl, timed
from bench.datasets import Task
from bench.recipe import training_arguments, with_lora
from lsllm.data.labels import LabelMap
from lsllm.metrics import selection_metric, sequence_metrics, token_metrics
from lsllm.training import trainer_metrics

IGNORE = -100


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


def encode(task: Task, tokenizer, rows: list[dict], label_ids: dict, max_length: int) -> list[dict]:
    """Rows as the baseline trains on them: token ids and labels (a token task labels first sub-tokens)."""
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


def build_trainer(
    task: Task,
    tokenizer,
    model,
    labels: list[str],
    rows: dict[str, list[dict]],
    settings: Settings,
    work_dir: Path,
    learning_rate: float,
) -> tuple[Trainer, dict[str, list[dict]]]:
    """The recipe's Trainer, shared by the accuracy and speed benchmarks: every split of `rows` encoded
    as the baseline trains on them, the best epoch chosen on the selection split."""
    label_ids = {name: i for i, name in enumerate(labels)}
    encoded = {
        split: encode(task, tokenizer, r, label_ids, task.budget.max_length) for split, r in rows.items()
    }
    collator = DataCollatorWithPadding if task.kind == "sequence" else DataCollatorForTokenClassification
    trainer = Trainer(
        model=model,
        args=training_arguments(
            task, settings, work_dir, learning_rate=learning_rate, metric=selection_metric(task.kind)
        ),
        train_dataset=encoded["train"],
        eval_dataset=encoded["selection"],
        data_collator=collator(tokenizer),
        compute_metrics=trainer_metrics(task.kind, LabelMap.from_names(labels)),
    )
    return trainer, encoded


def baseline_model(
    kind: str, labels: list[str], path: str, mode: str | None = None, dtype=None, quantize: str = "none"
):
    """AutoModelFor*Classification in `dtype` (default fp32), or quantised as QLoRA loads it (`quantize`,
    with the same bitsandbytes settings as lsllm's), in the attention mode asked.

    transformers 5 honours `config.is_causal = False`; lsllm's probe proves the switch took effect.
    """
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    from lsllm.modeling import quantization
    from lsllm.modeling.attention import check_attention

    notes = []
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        notes.append("the baseline's tokenizer had no pad token; it pads with eos")
    auto = AutoModelForSequenceClassification if kind == "sequence" else AutoModelForTokenClassification
    loading = quantization.loading_options(quantize, torch.device("cuda", 0)) if quantize != "none" else {}
    model = auto.from_pretrained(
        path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        pad_token_id=tokenizer.pad_token_id,
        dtype=torch.bfloat16 if loading else (dtype or torch.float32),
        **loading,
    )
    if loading:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if mode is not None:
        model.config.is_causal = mode == "causal"
        check_attention(model.base_model, mode, model.config.vocab_size)
    return tokenizer, model, notes


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
    tokenizer, model, _ = baseline_model(task.kind, labels, model_path)
    if lora:
        model = with_lora(model, settings, "SEQ_CLS" if task.kind == "sequence" else "TOKEN_CLS")
    rows = {split: read_jsonl(path) for split, path in paths.items()}
    learning_rate = settings.learning_rate if lora else settings.encoder_learning_rate
    trainer, encoded = build_trainer(task, tokenizer, model, labels, rows, settings, work_dir, learning_rate)
    _, train_seconds = timed(trainer.train)
    output, eval_seconds = timed(lambda: trainer.predict(encoded["evaluation"]))
    return {
        "metrics": _metrics(task, labels, rows["evaluation"], output),
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "history": trainer.state.log_history,
    }
