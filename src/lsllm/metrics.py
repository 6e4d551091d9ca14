"""Evaluation metrics for every task and label shape, as plain JSON-ready dicts, plus a terminal-friendly
rendering, and the tuning of multi-label decision thresholds on dev.

Single-label classification is scored over every label (absent classes included) and multi-label
classification per label and micro/macro-averaged, with scikit-learn; token classification at the entity
level with seqeval in strict IOB2 mode; regression by MSE and scipy's Pearson and Spearman correlations.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from seqeval.metrics import accuracy_score as token_accuracy_score
from seqeval.metrics.v1 import precision_recall_fscore_support as entity_prfs
from seqeval.metrics.v1 import unique_labels as entity_types
from seqeval.scheme import IOB2
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    mean_squared_error,
    precision_recall_fscore_support,
)

from lsllm.decision import Decision

# The dev metric that picks the best checkpoint. Regression selects on the lowest MSE, the loss it trains,
# rather than on a correlation: a correlation ignores scale and offset (predictions twice too large
# correlate perfectly), and it is undefined while a young model predicts one constant.
SELECTION_METRICS: dict[str, str] = {
    "token": "f1",
    "single": "accuracy",
    "multi": "micro_f1",
    "regression": "mse",
}
LOWER_IS_BETTER = {"mse"}
# Candidate multi-label thresholds: coarse on purpose, so a small dev set cannot fit them to its noise.
THRESHOLD_GRID = tuple(round(0.05 * step, 2) for step in range(1, 20))  # 0.05 .. 0.95
# Candidate single-label offsets (added to a label's logit), coarse for the same reason.
OFFSET_GRID = tuple(0.25 * step for step in range(-12, 13))  # -3 .. 3
OFFSET_ROUNDS = 3  # passes over the labels; each keeps only changes that raise dev macro-F1


def selection_metric(task: str, shape: str = "single", asked: str | None = None) -> str:
    """The dev-set metric key that decides which checkpoint is best (the lowest if in LOWER_IS_BETTER):
    the one the user `asked` for (--metric, single-label runs), else the shape's own."""
    return asked or SELECTION_METRICS["token" if task == "token" else shape]


def label_metrics(
    shape: str,
    gold: Sequence,
    predicted: Sequence,
    names: Sequence,
    thresholds: Sequence[float] | None = None,
) -> dict:
    """The metrics of a text-level label shape, from gold targets and the decided predictions."""
    if shape == "regression":
        return regression_metrics(gold, predicted)
    if shape == "multi":
        return multilabel_metrics(gold, predicted, names, thresholds)
    return sequence_metrics(gold, predicted, names)


def _scores(precision: float, recall: float, f1: float, support: int) -> dict:
    """One class's scores as plain Python numbers, so the dict survives `json.dumps`."""
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(support)}


def sequence_metrics(y_true: Sequence[int], y_pred: Sequence[int], label_names: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class scores and confusion matrix over every label, even unseen ones."""
    names = [str(name) for name in label_names]
    labels = list(range(len(names)))
    stray = sorted({int(y) for y in (*y_true, *y_pred)} - set(labels))
    if stray:
        raise ValueError(f"label indices {stray} are outside 0..{len(names) - 1}")
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: _scores(*row) for name, *row in zip(names, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": {"labels": names, "matrix": matrix.astype(int).tolist()},
    }


def multilabel_metrics(
    gold: Sequence[Sequence[float]],
    predicted: Sequence[Sequence[bool]],
    label_names: Sequence,
    thresholds: Sequence[float] | None = None,
) -> dict:
    """Micro- and macro-averaged F1, micro precision and recall, exact-match accuracy (every label of a text
    right), and per-label scores with the threshold each label was decided at."""
    names = [str(name) for name in label_names]
    gold, predicted = np.asarray(gold, dtype=int), np.asarray(predicted, dtype=int)
    micro = precision_recall_fscore_support(gold, predicted, average="micro", zero_division=0)
    per_label = precision_recall_fscore_support(gold, predicted, average=None, zero_division=0)
    scores = {name: _scores(*row) for name, *row in zip(names, *per_label, strict=True)}
    if thresholds is not None:
        for name, threshold in zip(names, thresholds, strict=True):
            scores[name]["threshold"] = float(threshold)
    return {
        "micro_f1": float(micro[2]),
        "macro_f1": float(per_label[2].mean()),
        "micro_precision": float(micro[0]),
        "micro_recall": float(micro[1]),
        "exact_match": float(accuracy_score(gold, predicted)),
        "per_label": scores,
    }


def tune_thresholds(gold: Sequence[Sequence[float]], logits, per_label: bool) -> tuple[float, ...]:
    """The multi-label thresholds, from THRESHOLD_GRID, that maximise dev F1: one shared by every label (the
    best micro-F1), or one per label (each label's best F1). Ties go to the threshold nearest 0.5."""
    gold = np.asarray(gold, dtype=int)
    candidates = sorted(THRESHOLD_GRID, key=lambda t: abs(t - 0.5))  # argmax keeps the first best
    count = gold.shape[1]
    decided = [Decision("multi", (t,) * count).decide(logits).int().numpy() for t in candidates]
    if per_label:
        f1 = np.array([f1_score(gold, d, average=None, zero_division=0) for d in decided])
        return tuple(candidates[i] for i in f1.argmax(axis=0))
    f1 = np.array([f1_score(gold, d, average="micro", zero_division=0) for d in decided])
    return (candidates[int(f1.argmax())],) * count


def tune_offsets(gold: Sequence[int], logits) -> tuple[float, ...]:
    """Single-label offsets, from OFFSET_GRID, added to the logits before argmax so as to maximise dev
    macro-F1: where one label dominates the training data, argmax under-predicts the rare ones, and
    macro-F1 counts each label alike. Coordinate ascent from no offsets, one label at a time, so dev
    macro-F1 never ends below argmax's; ties keep the offset nearest 0."""
    gold = np.asarray(gold, dtype=int)
    labels = list(range(np.shape(logits)[-1]))

    def macro_f1(offsets: np.ndarray) -> float:  # decided as predict will decide, in its arithmetic
        predicted = Decision("single", offsets=tuple(offsets)).decide(logits).numpy()
        return float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0))

    offsets = np.zeros(len(labels))
    best = macro_f1(offsets)
    candidates = sorted(OFFSET_GRID, key=abs)
    for _ in range(OFFSET_ROUNDS):
        before = best
        for label in labels:
            for value in candidates:
                trial = offsets.copy()
                trial[label] = value
                score = macro_f1(trial)
                if score > best:
                    offsets, best = trial, score
        if best == before:
            break
    return tuple(float(o) for o in offsets)


def regression_metrics(gold: Sequence[float], predicted: Sequence[float]) -> dict:
    """Mean squared error, and Pearson's and Spearman's correlations (None where they are undefined: fewer
    than two examples, or gold or predicted values that are all the same)."""
    from scipy.stats import pearsonr, spearmanr  # imported here: scipy.stats takes a second to load

    gold, predicted = np.asarray(gold, dtype=float), np.asarray(predicted, dtype=float)
    correlations = {"pearson": None, "spearman": None}
    if len(gold) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's warning for constant input; the result is NaN
            values = {"pearson": pearsonr(gold, predicted)[0], "spearman": spearmanr(gold, predicted)[0]}
        correlations = {key: None if math.isnan(value) else float(value) for key, value in values.items()}
    return {"mse": float(mean_squared_error(gold, predicted)), **correlations, "count": len(gold)}


def token_metrics(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict:
    """Strict IOB2 entity-level precision/recall/F1 (overall and per type) plus token accuracy."""
    # seqeval rejects anything but a list of lists (tuples, numpy arrays).
    true_tags, pred_tags = [list(tags) for tags in true_tags], [list(tags) for tags in pred_tags]
    options = {"scheme": IOB2, "zero_division": 0}
    precision, recall, f1, _ = entity_prfs(true_tags, pred_tags, average="micro", **options)
    per_type = entity_prfs(true_tags, pred_tags, average=None, **options)
    types = entity_types(true_tags, pred_tags, IOB2, False)
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "accuracy": float(token_accuracy_score(true_tags, pred_tags)),
        "per_type": {name: _scores(*row) for name, *row in zip(types, *per_type, strict=True)},
    }


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def _table(rows: list[list[str]]) -> list[str]:
    """Align rows into columns: the first left-justified, the rest right-justified."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            [row[0].ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True))]
        )
        for row in rows
    ]


def _format_one(metrics: dict) -> list[str]:
    """Render one split's metrics, recognising the task and label shape by its keys."""
    if "mse" in metrics:
        return _table([[key, _number(metrics[key])] for key in ("mse", "pearson", "spearman")])
    if "per_label" in metrics:
        headline = [
            ["micro-F1", _percent(metrics["micro_f1"])],
            ["macro-F1", _percent(metrics["macro_f1"])],
            ["micro precision", _percent(metrics["micro_precision"])],
            ["micro recall", _percent(metrics["micro_recall"])],
            ["exact match", _percent(metrics["exact_match"])],
        ]
        first_column, per_name = "label", metrics["per_label"]
    elif "per_class" in metrics:
        headline = [["accuracy", _percent(metrics["accuracy"])], ["macro-F1", _percent(metrics["macro_f1"])]]
        first_column, per_name = "class", metrics["per_class"]
    else:
        headline = [
            ["entity precision", _percent(metrics["precision"])],
            ["entity recall", _percent(metrics["recall"])],
            ["entity F1", _percent(metrics["f1"])],
            ["token accuracy", _percent(metrics["accuracy"])],
        ]
        first_column, per_name = "type", metrics["per_type"]
    thresholds = any("threshold" in s for s in per_name.values())
    scores = [[first_column, "precision", "recall", "f1", "support", *(["threshold"] if thresholds else [])]]
    scores += [
        [
            name,
            *(_percent(s[key]) for key in ("precision", "recall", "f1")),
            str(s["support"]),
            *([f"{s['threshold']:.2f}"] if thresholds else []),
        ]
        for name, s in per_name.items()
    ]
    lines = [*_table(headline), "", *(_table(scores) if per_name else ["(no entities)"])]
    if "confusion_matrix" in metrics:
        names, matrix = metrics["confusion_matrix"]["labels"], metrics["confusion_matrix"]["matrix"]
        grid = [["true \\ pred", *names]] + [
            [name, *map(str, row)] for name, row in zip(names, matrix, strict=True)
        ]
        lines += ["", "confusion matrix (rows = true, columns = predicted)", *_table(grid)]
    return lines


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_metrics(metrics: dict) -> str:
    """A plain-text report of one metrics dict, or of a dict of splits with one heading per split."""
    if any(key in metrics for key in ("accuracy", "micro_f1", "mse")):
        return "\n".join(_format_one(metrics))
    sections = [[f"== {split} ==", *_format_one(split_metrics)] for split, split_metrics in metrics.items()]
    return "\n\n".join("\n".join(section) for section in sections)
