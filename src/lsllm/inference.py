"""Batched prediction and evaluation with a trained run: labels and probabilities, numbers, or tags and
entities."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from statistics import fmean

import torch
from peft import PeftModel
from tqdm.auto import tqdm

from lsllm.artifacts import open_trained
from lsllm.config import PREDICT_BATCH_SIZE, RUNTIMES
from lsllm.data.collate import Collator
from lsllm.data.encoding import Encoder, WordAlignment, join_words
from lsllm.data.examples import SequenceExample
from lsllm.data.inputs import read_prediction_inputs
from lsllm.data.sources import Source, is_dataset, source_name
from lsllm.data.task import TaskData
from lsllm.data.words import word_spans
from lsllm.decision import Decision
from lsllm.errors import LsllmError
from lsllm.modeling import quantization
from lsllm.modeling.onnx_model import OnnxModel
from lsllm.modeling.precision import default_device, quantize_to_int8, resolve_precision
from lsllm.predictions import (
    Entity,
    MultiLabelPrediction,
    Prediction,
    Ranked,
    RegressionPrediction,
    SequenceInput,
    SequencePrediction,
    TokenInput,
    TokenPrediction,
    check_input,
    check_min_score,
    check_top_k,
    drop_weak_entities,
)


class Classifier:
    """A trained run ready to predict: model, tokenizer, label set, the options it was trained with, and
    its decision rule (for a multi-label run, with its thresholds; untuned ones unless given)."""

    def __init__(
        self, model: torch.nn.Module | OnnxModel, tokenizer, data: TaskData, decision: Decision | None = None
    ) -> None:
        # Folded LoRA predicts the same with no extra matmuls per layer, except into 4- or 8-bit weights,
        # whose quantisation grid would round it.
        if isinstance(model, PeftModel) and not quantization.is_quantized(model.backbone):
            model = model.merge_and_unload()
        self.model = model.eval() if isinstance(model, torch.nn.Module) else model
        self.tokenizer = tokenizer
        self.data = data
        self.decision = decision or Decision.untuned(data.labels)
        self.collate = Collator(tokenizer.pad_token_id, tokenizer.padding_side)

    @classmethod
    def load(
        cls,
        run_dir: str | Path,
        device: str | torch.device | None = None,
        precision: str = "auto",
        decision: Decision | None = None,
        runtime: str | None = None,
    ) -> Classifier:
        """Rebuild the model of a run folder (`lsllm train`) or an export folder (`lsllm export`).

        `precision` as for training: "auto" runs the backbone in bf16 where the device runs bf16 fast
        (the head stays fp32), "fp32" or "bf16" force it; "int8" quantises its linear layers (CPU only).
        `decision` replaces the folder's own rule (training uses it before the thresholds are tuned).
        `runtime`: "torch", or "onnx" (onnxruntime, CPU, for an ONNX export: fp32 for "auto", or the export's
        int8 graph); by default the folder's.
        """
        run = open_trained(run_dir)
        runtime = runtime or run.runtime
        if runtime not in RUNTIMES:
            raise LsllmError(f"unknown runtime {runtime!r}; use one of: {', '.join(RUNTIMES)}")
        device = (
            torch.device(device) if device else (OnnxModel.device if runtime == "onnx" else default_device())
        )
        if runtime == "onnx" and (device.type != "cpu" or precision == "bf16"):
            raise LsllmError(
                f"--runtime onnx runs the exported graph on the CPU in fp32 or int8, not {precision} on"
                f" {device}; choose one of those, or --runtime torch"
            )
        if precision == "int8" and device.type != "cpu":
            raise LsllmError(f"--precision int8 runs on a CPU only, not {device}; on a GPU use bf16")
        config = run.load_config()
        labels = run.load_labels()
        tokenizer = run.load_tokenizer()
        data = TaskData(config, labels, Encoder.for_config(tokenizer, config))
        decision = decision or run.load_decision(labels)
        if runtime == "onnx":
            return cls(run.load_onnx(int8=precision == "int8"), tokenizer, data, decision)
        model = run.load_model(config, labels, device)
        if precision == "int8":
            quantize_to_int8(model.backbone)
        elif quantization.is_quantized(model.backbone):
            pass  # as trained: 4 or 8 bits, computing in bf16
        elif resolve_precision(precision, device) == "bf16":
            model.backbone.to(torch.bfloat16)  # before it moves: a GPU never holds the fp32 copy
        return cls(model.to(device), tokenizer, data, decision)

    @property
    def device(self) -> torch.device:
        """Where the model runs: batches are moved there."""
        if isinstance(self.model, OnnxModel):
            return self.model.device
        return next(self.model.parameters()).device

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
        device = self.device
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
        inputs: Sequence[SequenceInput] | Sequence[TokenInput] | Source,
        batch_size: int = PREDICT_BATCH_SIZE,
        progress: bool = False,
        source: str = "the input",
        top_k: int | None = None,
        min_score: float | None = None,
    ) -> list[Prediction]:
        """Sequence and regression tasks: texts (or text pairs); `top_k` adds the k likeliest labels as
        "top". Token task: raw texts (split into words as lsllm.data.words says) or lists of words;
        `min_score` drops the entities scoring below it. A datasets.Dataset gives its rows' inputs, as
        `predict --input` reads a file's."""
        check_top_k(top_k, self.task)
        check_min_score(min_score, self.task)
        config = self.data.config
        if is_dataset(inputs):
            inputs = read_prediction_inputs(self.data, inputs)
        inputs = [check_input(x, i, self.task, config.text_pair) for i, x in enumerate(inputs, start=1)]
        if self.task != "token":
            examples = [SequenceExample(*x) if isinstance(x, tuple) else SequenceExample(x) for x in inputs]
            return self.predict_examples(examples, batch_size, progress, source, top_k)
        return drop_weak_entities(self._predict_words(inputs, batch_size, progress), min_score)

    def predict_examples(
        self,
        examples: list,
        batch_size: int = PREDICT_BATCH_SIZE,
        progress: bool = False,
        source: str = "the input",
        top_k: int | None = None,
    ) -> list[Prediction]:
        """Predict for examples as read from a file (the labels, if any, are ignored). A sequence longer
        than max_length keeps its first max_length tokens and its row says `"truncated": true`; a token
        input of any length is tagged whole, in overlapping windows (Encoder.windows)."""
        check_top_k(top_k, self.task)
        if self.task == "token":
            return self._predict_words([e.tokens for e in examples], batch_size, progress)
        features, all_logits = self._text_logits(examples, source, batch_size, progress)
        return [
            self._text_row(logits, feature.get("truncated", False), top_k)
            for feature, logits in zip(features, all_logits, strict=True)
        ]

    def _text_logits(
        self, examples: list, source: str, batch_size: int, progress: bool
    ) -> tuple[list[dict], list[torch.Tensor]]:
        features = self.data.encode(examples, source, with_labels=False)
        return features, self.logits(features, batch_size, progress)

    def _text_row(self, logits: torch.Tensor, truncated: bool, top_k: int | None) -> Prediction:
        """One text's row, as its label shape has it: the best label, the labels above threshold, or the
        number; `top` lists the k likeliest labels."""
        scores, decided = self.decision.scores(logits), self.decision.decide(logits)
        names = self.data.labels.names
        if self.decision.shape == "regression":
            row: Prediction = RegressionPrediction(value=float(decided))
        else:
            # A stable sort: equal scores keep the head's order, as argmax does.
            ranked = sorted(range(len(names)), key=lambda i: -float(scores[i]))
            probs = {str(name): float(p) for name, p in zip(names, scores, strict=True)}
            if self.decision.shape == "multi":
                chosen = [Ranked(label=names[i], score=float(scores[i])) for i in ranked if decided[i]]
                row = MultiLabelPrediction(labels=chosen, probs=probs)
            else:
                best = int(decided)
                row = SequencePrediction(label=names[best], score=float(scores[best]), probs=probs)
            if top_k is not None:
                row["top"] = [Ranked(label=names[i], score=float(scores[i])) for i in ranked[:top_k]]
        if truncated:
            row["truncated"] = True
        return row

    def _predict_words(
        self, inputs: list[TokenInput], batch_size: int, progress: bool
    ) -> list[TokenPrediction]:
        """Tag every word of each input, in as many windows of at most max_length tokens as it needs."""
        causal = self.data.config.attention == "causal"
        prepared = []
        for item in inputs:
            if isinstance(item, str):
                text, spans = item, word_spans(item)
                words = [item[s:e] for s, e in spans]
            else:
                words = list(item)
                text, spans = join_words(words)
            windows = self.data.encoder.windows(text, spans, causal)
            prepared.append((words, text if isinstance(item, str) else None, spans, windows))
        features = [{"input_ids": w.input_ids} for *_, windows in prepared for w in windows]
        all_logits = iter(self.logits(features, batch_size, progress))
        return [
            self._token_row(words, text, spans, [(w, next(all_logits)) for w in windows])
            for words, text, spans, windows in prepared
        ]

    def _token_row(
        self,
        words: list[str],
        text: str | None,
        spans: list[tuple[int, int]],
        windows: list[tuple[WordAlignment, torch.Tensor]],
    ) -> TokenPrediction:
        """Tags from the window that predicts each word; entities with character offsets for raw text."""
        names = [str(n) for n in self.data.labels.names]
        tags: list[str] = ["O"] * len(words)
        scores: list[float | None] = [None] * len(words)  # None: the tokenizer gave the word no token
        for alignment, logits in windows:
            probs = logits.softmax(-1)
            for word, token in alignment.owned_words():  # a window's own words only: not words x windows
                best = int(probs[token].argmax())
                tags[word], scores[word] = names[best], float(probs[token, best])
        from seqeval.metrics.sequence_labeling import get_entities  # see evaluate_examples

        entities = []
        for kind, start, last in get_entities(tags):
            score = fmean(scores[start : last + 1])  # an entity's words are tagged, so each has a score
            if text is None:
                entity = Entity(
                    type=kind, score=score, start=start, end=last + 1, text=" ".join(words[start : last + 1])
                )
            else:
                begin, end = spans[start][0], spans[last][1]
                entity = Entity(
                    type=kind,
                    score=score,
                    start=start,
                    end=last + 1,
                    text=text[begin:end],
                    start_char=begin,
                    end_char=end,
                )
            entities.append(entity)
        return TokenPrediction(tokens=words, tags=tags, scores=scores, entities=entities)

    def evaluate(self, source: Source, batch_size: int = PREDICT_BATCH_SIZE, progress: bool = False) -> dict:
        """Metrics of this model on a labelled file or dataset (a path, NAME:SPLIT, or a datasets.Dataset)."""
        name = source_name(source)
        return self.evaluate_examples(self.data.read(source, name=name), name, batch_size, progress)

    def evaluate_examples(
        self, examples: list, source: str, batch_size: int = PREDICT_BATCH_SIZE, progress: bool = False
    ) -> dict:
        """Metrics on labelled examples, decided as `predict` decides."""
        return self.scores(*self.outcomes(examples, source, batch_size, progress))

    def outcomes(
        self, examples: list, source: str, batch_size: int = PREDICT_BATCH_SIZE, progress: bool = False
    ) -> tuple[list, list]:
        """The gold answers of labelled examples and what the run decides for them: class ids, a flag per
        label (multi-label), numbers (regression), or for token runs tag lists."""
        gold = self.data.targets(examples, source)
        if self.task == "token":
            names = self.data.labels.names
            predictions = self.predict_examples(examples, batch_size, progress, source)
            return [[str(names[t]) for t in row] for row in gold], [p["tags"] for p in predictions]
        _, logits = self._text_logits(examples, source, batch_size, progress)
        return gold, self.decision.decide(torch.stack(logits)).tolist()

    def scores(self, gold: list, predicted: list) -> dict:
        """The metrics of `outcomes`."""
        # Imported here: seqeval brings in scikit-learn, ~100 MB that a process which only predicts
        # sequence labels (a server, a batch job) does not need.
        from lsllm.metrics import label_metrics, token_metrics

        if self.task == "token":
            return token_metrics(gold, predicted)
        names = self.data.labels.names
        return label_metrics(self.decision.shape, gold, predicted, names, self.decision.thresholds)


def load(
    run_dir: str | Path, device: str | None = None, precision: str = "auto", runtime: str | None = None
) -> Classifier:
    """Load a run folder written by `lsllm train`, or an export by `lsllm export`, to predict and evaluate."""
    return Classifier.load(run_dir, device, precision, runtime=runtime)
