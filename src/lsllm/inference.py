"""Batched prediction and evaluation with a trained run: labels and probabilities, or tags and entities."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from peft import PeftModel
from seqeval.metrics.sequence_labeling import get_entities
from tqdm.auto import tqdm

from lsllm.config import PREDICT_BATCH_SIZE
from lsllm.data.collate import Collator
from lsllm.data.encoding import Encoder, WordAlignment, word_spans
from lsllm.data.readers import SequenceExample
from lsllm.data.task import TaskData
from lsllm.errors import LsllmError
from lsllm.metrics import sequence_metrics, token_metrics
from lsllm.modeling import build_model
from lsllm.models import load_tokenizer
from lsllm.run import TOKENIZER, RunFolder

SequenceInput = str | tuple[str, str]
TokenInput = str | list[str]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Classifier:
    """A trained run ready to predict: model, tokenizer, label set and the options it was trained with."""

    def __init__(self, model: torch.nn.Module, tokenizer, data: TaskData) -> None:
        if isinstance(model, PeftModel):  # folded LoRA predicts the same, with no extra matmuls per layer
            model = model.merge_and_unload()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.data = data
        self.collate = Collator(tokenizer.pad_token_id, tokenizer.padding_side)

    @classmethod
    def load(cls, run_dir: str | Path, device: str | torch.device | None = None) -> Classifier:
        """Rebuild the model of a run folder: base model, attention mode, LoRA adapter and head."""
        run = RunFolder(Path(run_dir))
        run.check()
        config = run.load_config()
        labels = run.load_labels()
        tokenizer = load_tokenizer(str(run.path / TOKENIZER))
        core = build_model(config, len(labels))
        try:
            model = PeftModel.from_pretrained(core, str(run.path))
        except Exception as error:  # safetensors, shape and key errors all mean the same thing here
            reason = str(error).splitlines()[0][:200]
            raise LsllmError(
                f"cannot load the weights in {run.path} ({reason}); the run is corrupt, retrain it"
            ) from None
        model.to(device or default_device())
        return cls(model, tokenizer, TaskData(config, labels, Encoder(tokenizer, config.max_length)))

    @property
    def task(self) -> str:
        return self.data.config.task

    @property
    def labels(self) -> list:
        return list(self.data.labels.names)

    @torch.no_grad()
    def logits(
        self, features: list[dict], batch_size: int = PREDICT_BATCH_SIZE, progress: bool = False
    ) -> list[torch.Tensor]:
        """Logits per example, computed in length-sorted batches (less padding), returned in input order."""
        order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
        device = next(self.model.parameters()).device
        results: list[torch.Tensor | None] = [None] * len(features)
        batches = range(0, len(order), batch_size)
        for start in tqdm(batches, desc="predicting", unit="batch", disable=not progress):
            chunk = order[start : start + batch_size]
            batch = self.collate([{"input_ids": features[i]["input_ids"]} for i in chunk])
            logits = self.model(**{k: v.to(device) for k, v in batch.items()})["logits"].float().cpu()
            for row, i in enumerate(chunk):
                if self.task == "token":
                    results[i] = logits[row][batch["attention_mask"][row].bool()]
                else:
                    results[i] = logits[row]
        return results

    def predict(
        self,
        inputs: Sequence[SequenceInput] | Sequence[TokenInput],
        batch_size: int = PREDICT_BATCH_SIZE,
        progress: bool = False,
        source: str = "the input",
    ) -> list[dict]:
        """Sequence task: texts (or text pairs). Token task: raw texts or lists of words."""
        if self.task == "sequence":
            examples = [SequenceExample(*x) if isinstance(x, tuple) else SequenceExample(x) for x in inputs]
            return self.predict_examples(examples, batch_size, progress, source)
        return self._predict_words(list(inputs), batch_size, progress, source)

    def predict_examples(
        self,
        examples: list,
        batch_size: int = PREDICT_BATCH_SIZE,
        progress: bool = False,
        source: str = "the input",
    ) -> list[dict]:
        """Predict for examples as read from a file (the labels, if any, are ignored)."""
        if self.task == "token":
            return self._predict_words([e.tokens for e in examples], batch_size, progress, source)
        for i, example in enumerate(examples):
            if not example.text.strip():
                raise LsllmError(f"input {i + 1} is empty; give a non-empty text")
        features = self.data.encode(examples, source, with_labels=False)
        return [self._sequence_row(row) for row in self.logits(features, batch_size, progress)]

    def _sequence_row(self, logits: torch.Tensor) -> dict:
        probs = logits.softmax(-1)
        best = int(probs.argmax())
        names = self.data.labels.names
        return {
            "label": names[best],
            "score": float(probs[best]),
            "probs": {str(name): float(p) for name, p in zip(names, probs, strict=True)},
        }

    def _predict_words(
        self, inputs: list[TokenInput], batch_size: int, progress: bool, source: str
    ) -> list[dict]:
        encoder = self.data.encoder
        prepared = []
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                spans = word_spans(item)
                words = [item[s:e] for s, e in spans]
                alignment = encoder.align_text(item, spans)
            else:
                words, spans = list(item), None
                alignment = encoder.align(words)
            if not words:
                raise LsllmError(f"input {i + 1} has no words; give a non-empty text")
            prepared.append((words, spans, alignment))
        features = encoder.encode_tokens([a for _, _, a in prepared], None, source)
        all_logits = self.logits(features, batch_size, progress)
        return [self._token_row(*item, logits) for item, logits in zip(prepared, all_logits, strict=True)]

    def _token_row(self, words: list[str], spans, alignment: WordAlignment, logits: torch.Tensor) -> dict:
        probs = logits.softmax(-1)
        names = [str(n) for n in self.data.labels.names]
        tags, scores = [], []
        for token in alignment.word_tokens:
            if token is None:  # cut off by --max-length
                tags.append("O")
                scores.append(None)
            else:
                best = int(probs[token].argmax())
                tags.append(names[best])
                scores.append(float(probs[token, best]))
        entities = []
        for kind, start, last in get_entities(tags):
            entity = {
                "type": kind,
                "start": start,
                "end": last + 1,
                "text": " ".join(words[start : last + 1]),
            }
            if spans is not None:
                entity["start_char"], entity["end_char"] = spans[start][0], spans[last][1]
            entities.append(entity)
        return {"tokens": words, "tags": tags, "scores": scores, "entities": entities}

    def evaluate(self, path: str, batch_size: int = PREDICT_BATCH_SIZE, progress: bool = False) -> dict:
        """Metrics of this model on a labelled file."""
        return self.evaluate_examples(self.data.read(path), path, batch_size, progress)

    def evaluate_examples(
        self, examples: list, source: str, batch_size: int = PREDICT_BATCH_SIZE, progress: bool = False
    ) -> dict:
        gold = self.data.label_ids(examples, source)
        predictions = self.predict_examples(examples, batch_size, progress, source)
        names = self.data.labels.names
        if self.task == "sequence":
            predicted = [self.data.labels.index(p["label"]) for p in predictions]
            return sequence_metrics(gold, predicted, names)
        gold_tags = [[str(names[t]) for t in row] for row in gold]
        return token_metrics(gold_tags, [p["tags"] for p in predictions])


def load(run_dir: str | Path, device: str | None = None) -> Classifier:
    """Load a run folder written by `lsllm train` for prediction and evaluation."""
    return Classifier.load(run_dir, device)
