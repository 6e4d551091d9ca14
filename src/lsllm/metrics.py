"""Evaluation metrics for both tasks, as plain JSON-ready dicts, plus a terminal-friendly rendering.

Sequence classification is scored over every label (absent classes included) with scikit-learn;
token classification is scored at the entity level with seqeval in strict IOB2 mode.
"""

from __future__ import annotations

from collections.abc import Sequence

from seqeval.metrics import accuracy_score as token_accuracy_score
from seqeval.metrics.v1 import precision_recall_fscore_support as entity_prfs
from seqeval.metrics.v1 import unique_labels as entity_types
from seqeval.scheme import IOB2
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

SELECTION_METRICS: dict[str, str] = {"sequence": "accuracy", "token": "f1"}


def selection_metric(task: str) -> str:
    """The dev-set metric key that decides which checkpoint is best for `task`."""
    if task not in SELECTION_METRICS:
        raise ValueError(f"unknown task {task!r}; use one of: {', '.join(SELECTION_METRICS)}")
    return SELECTION_METRICS[task]


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
    """Render one split's metrics, recognising the sequence or token shape by its keys."""
    if "per_class" in metrics:
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
    scores = [[first_column, "precision", "recall", "f1", "support"]] + [
        [name, *(_percent(s[key]) for key in ("precision", "recall", "f1")), str(s["support"])]
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


def format_metrics(metrics: dict) -> str:
    """A plain-text report of one metrics dict, or of a dict of splits with one heading per split."""
    if "accuracy" in metrics:
        return "\n".join(_format_one(metrics))
    sections = [[f"== {split} ==", *_format_one(split_metrics)] for split, split_metrics in metrics.items()]
    return "\n\n".join("\n".join(section) for section in sections)
