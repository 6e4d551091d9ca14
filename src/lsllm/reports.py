"""Pictures of a run for people to look at: learning curves from its training log, and the scores of an
evaluation: a single-label run's confusion matrix, a token run's precision, recall and F1 per entity type
(a multi-label run's per label), a regression run's predictions against the true values.

Drawn with matplotlib's Agg canvas (no display and no pyplot state, so training threads and servers are
safe) and written atomically as PNG. A picture is a report, not a result: one that cannot be drawn is a
warning, never a failed run.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lsllm.atomic import write_bytes_atomic
from lsllm.errors import first_line
from lsllm.metrics import LOWER_IS_BETTER

logger = logging.getLogger(__name__)

LEARNING_CURVES = "learning_curves.png"
CONFUSION_MATRIX = "confusion_matrix.png"
PER_TYPE_F1 = "per_type_f1.png"
PER_LABEL_F1 = "per_label_f1.png"
PREDICTED_VS_TRUE = "predicted_vs_true.png"
DPI = 100


@dataclass
class Curves:
    """What the learning curves plot: the training loss at each logged step, and at each evaluation the
    dev loss and the metric that selects the best checkpoint."""

    metric: str
    lower_is_better: bool
    train_steps: list[int]
    train_loss: list[float]
    eval_steps: list[int]
    eval_loss: list[float]
    eval_metric: list[float]


def read_log(path: Path) -> list[dict]:
    """The records of a run's training_log.jsonl; a line cut short by a crash is skipped."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def learning_curves(records: list[dict], metric: str) -> Curves:
    """The training records (with "loss") and the evaluation records (with "eval_<metric>") of a log."""
    train = [r for r in records if isinstance(r.get("loss"), int | float)]
    evals = [r for r in records if isinstance(r.get(f"eval_{metric}"), int | float)]
    return Curves(
        metric=metric,
        lower_is_better=metric in LOWER_IS_BETTER,
        train_steps=[r["step"] for r in train],
        train_loss=[float(r["loss"]) for r in train],
        eval_steps=[r["step"] for r in evals],
        eval_loss=[float(r.get("eval_loss", float("nan"))) for r in evals],
        eval_metric=[float(r[f"eval_{metric}"]) for r in evals],
    )


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def curves_figure(curves: Curves, title: str):
    figure = _figure(10, 4)
    loss, score = figure.subplots(1, 2)
    loss.plot(curves.train_steps, curves.train_loss, ".-", label="train loss", color="tab:blue")
    if curves.eval_steps:
        loss.plot(curves.eval_steps, curves.eval_loss, "o--", label="dev loss", color="tab:orange")
        score.plot(curves.eval_steps, curves.eval_metric, "o-", color="tab:green")
        pick = min if curves.lower_is_better else max  # as the Trainer picks: the first best
        best = pick(range(len(curves.eval_metric)), key=curves.eval_metric.__getitem__)
        step, value = curves.eval_steps[best], curves.eval_metric[best]
        score.plot(
            [step], [value], "*", markersize=14, color="tab:red", label=f"best: {value:.3f} at step {step}"
        )
        score.legend()
    loss.set(xlabel="step", ylabel="loss", title="loss")
    loss.legend()
    score.set(xlabel="step", ylabel=f"dev {curves.metric}", title=f"dev {curves.metric} per evaluation")
    for axes in (loss, score):
        axes.grid(alpha=0.3)
    figure.suptitle(title)
    return figure


def confusion_figure(metrics: dict, title: str):
    """The confusion matrix of single-label metrics (lsllm.metrics.sequence_metrics): counts, true by row."""
    names = [str(name) for name in metrics["confusion_matrix"]["labels"]]
    matrix = metrics["confusion_matrix"]["matrix"]
    side = min(4 + 0.5 * len(names), 20)
    figure = _figure(side + 1, side)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8, label="examples")
    highest = max(max(row) for row in matrix) or 1
    font = max(5, 11 - len(names) // 4)
    for row, counts in enumerate(matrix):
        for column, count in enumerate(counts):
            color = "white" if count > highest / 2 else "black"
            axes.text(column, row, str(count), ha="center", va="center", color=color, fontsize=font)
    ticks = range(len(names))
    slanted = len(names) > 4
    axes.set_xticks(ticks, names, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    axes.set_yticks(ticks, names)
    axes.set(xlabel="predicted", ylabel="true")
    total = sum(map(sum, matrix))
    summary = f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, {total} examples"
    axes.set_title(f"{title}\n{summary}")
    return figure


@dataclass
class ClassScores:
    """What the per-type (token) or per-label (multi-label) chart plots: for each entity type or label,
    and "all" (the micro average), its precision, recall and F1, and how often the data holds it."""

    names: list[str]
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    thresholds: list[float | None]  # a multi-label run's decision threshold per label


def class_scores(metrics: dict) -> ClassScores:
    """Token metrics' entity types, or multi-label metrics' labels, as rows of the chart, "all" last."""
    if "per_type" in metrics:
        rows, overall = metrics["per_type"], ("precision", "recall", "f1")
    else:
        rows, overall = metrics["per_label"], ("micro_precision", "micro_recall", "micro_f1")
    support = [rows[name]["support"] for name in rows]
    return ClassScores(
        names=[*rows, "all"],
        precision=[rows[name]["precision"] for name in rows] + [metrics[overall[0]]],
        recall=[rows[name]["recall"] for name in rows] + [metrics[overall[1]]],
        f1=[rows[name]["f1"] for name in rows] + [metrics[overall[2]]],
        support=[*support, sum(support)],
        thresholds=[rows[name].get("threshold") for name in rows] + [None],
    )


def class_scores_figure(metrics: dict, title: str):
    scores = class_scores(metrics)
    rows = len(scores.names)
    figure = _figure(8, min(2 + 0.6 * rows, 30))
    axes = figure.subplots()
    height = 0.27
    bars = [
        ("precision", scores.precision, "tab:blue"),
        ("recall", scores.recall, "tab:orange"),
        ("F1", scores.f1, "tab:green"),
    ]
    for offset, (label, values, color) in enumerate(bars):
        positions = [row + (offset - 1) * height for row in range(rows)]
        drawn = axes.barh(positions, values, height, label=label, color=color)
        axes.bar_label(drawn, fmt="%.2f", padding=2, fontsize=8)
    ticks = [
        f"{name} ({count})" if threshold is None else f"{name} ({count}, t={threshold:.2f})"
        for name, count, threshold in zip(scores.names, scores.support, scores.thresholds, strict=True)
    ]
    axes.set_yticks(range(rows), ticks)
    axes.invert_yaxis()  # the first type on top, "all" at the bottom
    axes.set_xlim(0, 1.12)
    token = "per_type" in metrics
    rows_are = "entity type (entities in the data)" if token else "label (texts with it, threshold)"
    axes.set(xlabel="score", ylabel=rows_are)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the bars, never over them
    axes.grid(axis="x", alpha=0.3)
    summary = (
        f"entity F1 {metrics['f1']:.3f}"
        if token
        else f"micro-F1 {metrics['micro_f1']:.3f}, macro-F1 {metrics['macro_f1']:.3f},"
        f" exact match {metrics['exact_match']:.3f}"
    )
    axes.set_title(f"{title}\n{summary}")
    return figure


def scatter_figure(metrics: dict, gold: list[float], predicted: list[float], title: str):
    """A regression run's predicted values against the true ones, with the line where they are equal."""
    figure = _figure(6, 6)
    axes = figure.subplots()
    axes.scatter(gold, predicted, s=12, alpha=0.6)
    low, high = min(*gold, *predicted), max(*gold, *predicted)
    axes.plot([low, high], [low, high], "--", color="gray", label="predicted = true")
    axes.set(xlabel="true", ylabel="predicted", aspect="equal")
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)
    correlations = ", ".join(
        f"{name.title()} {metrics[name]:.3f}" for name in ("pearson", "spearman") if metrics[name] is not None
    )
    summary = ", ".join(part for part in (f"MSE {metrics['mse']:.4g}", correlations) if part)
    axes.set_title(f"{title}\n{summary}, {len(gold)} examples")
    return figure


def save_png(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())


def _draw(path: Path, make: Callable[[], object]) -> Path | None:
    """Draw and write one picture; a failure is logged as a warning and gives None."""
    try:
        save_png(make(), path)
    except Exception as error:  # a picture never fails the run or the evaluation it reports on
        logger.warning(
            "could not draw %s (%s: %s); everything else is written",
            path,
            type(error).__name__,
            first_line(error),
        )
        return None
    return path


def draw_scores(
    metrics: dict, folder: Path, prefix: str, title: str, outcomes: tuple[list, list] | None = None
) -> list[Path]:
    """The picture of one evaluation in `folder`, named PREFIX + confusion_matrix.png (single-label),
    per_type_f1.png (token), per_label_f1.png (multi-label) or predicted_vs_true.png (regression, from the
    gold and predicted values in `outcomes`)."""
    if "confusion_matrix" in metrics:
        name, make = CONFUSION_MATRIX, lambda: confusion_figure(metrics, title)
    elif "per_type" in metrics:
        name, make = PER_TYPE_F1, lambda: class_scores_figure(metrics, title)
    elif "per_label" in metrics:
        name, make = PER_LABEL_F1, lambda: class_scores_figure(metrics, title)
    elif "mse" in metrics and outcomes is not None:
        name, make = PREDICTED_VS_TRUE, lambda: scatter_figure(metrics, *outcomes, title)
    else:
        return []
    written = _draw(folder / f"{prefix}{name}", make)
    return [written] if written else []


def draw_run(
    run_dir: Path, log: Path, metric: str, evaluation: dict, outcomes: tuple[list, list], title: str
) -> list[Path]:
    """A run folder's pictures: learning curves from its log, and one evaluation's (the test set's when
    the run has one, else the dev set's) with its outcomes."""
    written = _draw(
        run_dir / LEARNING_CURVES,
        lambda: curves_figure(learning_curves(read_log(log), metric), f"learning curves: {run_dir.name}"),
    )
    pictures = [written] if written else []
    return pictures + draw_scores(evaluation, run_dir, "", title, outcomes)
