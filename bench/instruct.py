"""The approach the paper argues against: an instruct model answering with the label word.

Instruction tuning LoRA-trains the causal LM to generate the label word(s) after an instruction;
zero-shot asks the untuned instruct model. Both decode by constrained choice: the answer is the label
whose first token is most likely, which is exact because every label starts with a different token.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback

from bench.common import Settings, read_jsonl, timed
from bench.datasets import Task
from bench.recipe import training_arguments, with_lora
from lsllm.metrics import sequence_metrics

IGNORE = -100
EVAL_BATCH_SIZE = 8


def chat_prompt(tokenizer, task: Task, words: list[str], text: str) -> str:
    """The task's instruction naming the answer words (in the run's label order), then the text, as the
    user's chat turn, with the assistant's turn opened for the answer."""
    message = f"{task.description} Answer with one of: {', '.join(words)}.\n\n{text}"
    chat = [{"role": "user", "content": message}]
    return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)


class Prompter:
    """Builds chat prompts and answers for one task, and knows each label's first answer token."""

    def __init__(self, task: Task, tokenizer, labels: list[str]) -> None:
        self.task, self.tokenizer, self.labels = task, tokenizer, labels
        self.words = [task.label_words[label] for label in labels]
        self.first_tokens = [self._ids(word)[0] for word in self.words]
        if len(set(self.first_tokens)) != len(self.words):
            raise SystemExit(
                f"bench: the answer words of {task.name} share a first token; choose other words"
            )

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt(self, text: str) -> list[int]:
        text = self.tokenizer.decode(self._ids(text)[: self.task.budget.max_length])
        return self._ids(chat_prompt(self.tokenizer, self.task, self.words, text))

    def training_example(self, row: dict) -> dict:
        prompt = self.prompt(row["text"])
        answer = self._ids(self.task.label_words[row["label"]] + self.tokenizer.eos_token)
        return {"input_ids": prompt + answer, "labels": [IGNORE] * len(prompt) + answer}


def _pad(features: list[dict], pad_id: int) -> dict:
    """Right-pad a training batch; padded positions are masked and carry no loss."""
    width = max(len(f["input_ids"]) for f in features)
    batch = {"input_ids": [], "attention_mask": [], "labels": []}
    for f in features:
        gap = width - len(f["input_ids"])
        batch["input_ids"].append(f["input_ids"] + [pad_id] * gap)
        batch["attention_mask"].append([1] * len(f["input_ids"]) + [0] * gap)
        batch["labels"].append(f["labels"] + [IGNORE] * gap)
    return {key: torch.tensor(value) for key, value in batch.items()}


def _first_answer_positions(labels: torch.Tensor) -> torch.Tensor:
    return (labels != IGNORE).int().argmax(-1)


@torch.inference_mode()
def choose(model, prompter: Prompter, rows: list[dict]) -> list[int]:
    """The label index whose first answer token scores highest, for each row (left-padded batches)."""
    prompts = [prompter.prompt(row["text"]) for row in rows]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    pad_id = prompter.tokenizer.pad_token_id
    choices = torch.tensor(prompter.first_tokens)
    chosen = [0] * len(rows)
    for start in range(0, len(order), EVAL_BATCH_SIZE):
        chunk = order[start : start + EVAL_BATCH_SIZE]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.tensor([[pad_id] * (width - len(prompts[i])) + prompts[i] for i in chunk])
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in chunk])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
        for i, best in zip(chunk, logits[:, -1, choices].argmax(-1).tolist(), strict=True):
            chosen[i] = best
    return chosen


def _selection(prompter: Prompter, metric: str):
    """Dev-set scoring inside the Trainer: keep only the label-first-token logits at the answer position."""
    choices = torch.tensor(prompter.first_tokens)

    def reduce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        at = _first_answer_positions(labels) - 1
        return logits[torch.arange(len(labels)), at][:, choices]

    def compute(output) -> dict:
        labels = torch.as_tensor(output.label_ids)
        gold_tokens = labels[torch.arange(len(labels)), _first_answer_positions(labels)].tolist()
        gold = [prompter.first_tokens.index(token) for token in gold_tokens]
        predicted = output.predictions.argmax(-1).tolist()
        return {metric: sequence_metrics(gold, predicted, prompter.labels)[metric]}

    return reduce, compute


class StopAfter(TrainerCallback):
    """End training once `seconds` have passed since it began, evaluating and saving that last state so
    that dev-set selection sees it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if time.perf_counter() - self.started >= self.seconds:
            control.should_training_stop = control.should_evaluate = control.should_save = True
        return control


def run(
    task: Task,
    paths: dict[str, Path],
    labels: list[str],
    model_path: str,
    settings: Settings,
    work_dir: Path,
    tune: bool,
    time_budget: float | None = None,
) -> dict:
    """Instruction-tune (tune=True) or prompt zero-shot, then answer by constrained choice; with a
    `time_budget` (seconds), training stops there after a last evaluation, and the best epoch or that
    last state is kept."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    prompter = Prompter(task, tokenizer, labels)
    rows = {split: read_jsonl(path) for split, path in paths.items()}
    history, train_seconds = [], 0.0
    if tune:
        model = with_lora(model, settings, "CAUSAL_LM")
        reduce, compute = _selection(prompter, task.metric)
        trainer = Trainer(
            model=model,
            args=training_arguments(
                task,
                settings,
                work_dir,
                learning_rate=settings.learning_rate,
                metric=task.metric,
                per_device_eval_batch_size=EVAL_BATCH_SIZE,
                remove_unused_columns=False,
            ),
            train_dataset=[prompter.training_example(row) for row in rows["train"]],
            eval_dataset=[prompter.training_example(row) for row in rows["selection"]],
            data_collator=lambda features: _pad(features, tokenizer.pad_token_id),
            preprocess_logits_for_metrics=reduce,
            compute_metrics=compute,
            callbacks=[StopAfter(time_budget)] if time_budget else None,
        )
        _, train_seconds = timed(trainer.train)
        history = trainer.state.log_history
        model = model.merge_and_unload()
    model.eval()
    predicted, eval_seconds = timed(lambda: choose(model, prompter, rows["evaluation"]))
    gold = [labels.index(row["label"]) for row in rows["evaluation"]]
    return {
        "metrics": sequence_metrics(gold, predicted, labels),
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "history": history,
    }
