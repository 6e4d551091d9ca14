"""Turn the accuracy benchmark's per-run JSON records into the committed results.

`bench.accuracy` writes one record per (task, system) run under `<results>/runs/`. This module reads them
all and writes, beside them, `table.md` (a summary table and one detailed table per task), `results.json`
(every record in display order) and two plots, `scores.png` and `learning_curves.png`. It only reads the
records, so it can be re-run at any time, e.g. after one more system has finished.

Usage: python -m bench.report [--results bench/results/accuracy]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lsllm.atomic import write_text_atomic

Run = dict[str, Any]

DEFAULT_RESULTS = Path("bench/results/accuracy")
SYSTEM_ORDER = ("ls-llama", "ls-unllama", "ls-unllama-max", "hf-lora", "minilm", "instruct-lora", "zero-shot")
TASK_ORDER = ("sst2", "sst5", "twitter_fin", "conll2003", "wnut17")
TASK_NAMES = {
    "sst2": "SST-2",
    "sst5": "SST-5",
    "twitter_fin": "Twitter Fin",
    "conll2003": "CoNLL-2003",
    "wnut17": "WNUT-17",
}
METRIC_NAMES = {"accuracy": "acc", "macro_f1": "macro-F1", "f1": "entity F1"}
DASH = "\u2013"  # en dash, for cells with nothing to show


def _rank(name: str, order: tuple[str, ...]) -> tuple[int, str]:
    """Known names in display order, unknown ones after them, alphabetically."""
    return (order.index(name) if name in order else len(order), name)


def _run_key(run: Run) -> tuple:
    return (_rank(run["task"], TASK_ORDER), _rank(run["system"], SYSTEM_ORDER))


def load_runs(results_dir: Path) -> list[Run]:
    """Every run record, sorted by task then system, so all outputs list them the same way."""
    files = sorted((results_dir / "runs").glob("*.json"))
    if not files:
        raise SystemExit(f"bench.report: no run files in {results_dir / 'runs'}; run bench.accuracy first")
    runs = [json.loads(path.read_text(encoding="utf-8")) for path in files]
    return sorted(runs, key=_run_key)


def _unique(values: Iterable[Any]) -> list[Any]:
    """Distinct values in first-seen order (dict keys keep insertion order)."""
    return list(dict.fromkeys(values))


def _tasks(runs: list[Run]) -> list[str]:
    return _unique(run["task"] for run in runs)


def _systems(runs: list[Run]) -> list[str]:
    return sorted(_unique(run["system"] for run in runs), key=lambda name: _rank(name, SYSTEM_ORDER))


def _labels(runs: list[Run]) -> dict[str, str]:
    return {run["system"]: run.get("system_label") or run["system"] for run in runs}


def _task_runs(runs: list[Run], task: str) -> list[Run]:
    return [run for run in runs if run["task"] == task]


def _task_name(task: str) -> str:
    return TASK_NAMES.get(task, task)


def _metric_title(run: Run) -> str:
    """E.g. 'dev acc': the split and metric a task's headline score is measured on."""
    return f"{run['evaluation_split']} {METRIC_NAMES.get(run['metric'], run['metric'])}"


def _percent(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.1f}"


def _rate(value: float | None) -> str:
    """Examples per second; zero or missing means the stage did not run (zero-shot has no training)."""
    return f"{value:.1f}" if value else DASH


def _duration(seconds: float | None) -> str:
    """Compact wall time like 8m32s or 1h05m07s; a dash when there was no training."""
    if not seconds:
        return DASH
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(row) for row in rows)]


def summary_table(runs: list[Run]) -> list[str]:
    """Systems by tasks, headline score in percent, the best per task in bold."""
    tasks = _tasks(runs)
    firsts = {task: _task_runs(runs, task)[0] for task in tasks}
    header = ["System", *(f"{_task_name(task)} {_metric_title(firsts[task])}" for task in tasks)]
    scores = {(run["task"], run["system"]): run["score"] for run in runs}
    best = {task: max(run["score"] for run in _task_runs(runs, task)) for task in tasks}
    labels = _labels(runs)
    rows = []
    for system in _systems(runs):
        cells = [labels[system]]
        for task in tasks:
            score = scores.get((task, system))
            cell = _percent(score)
            cells.append(f"**{cell}**" if score is not None and score == best[task] else cell)
        rows.append(cells)
    return _table(header, rows)


def _budget_text(budget: dict[str, Any]) -> str:
    return (
        f"{budget.get('train_examples', '?')} training examples, "
        f"{budget.get('selection_examples', '?')} selection examples, "
        f"{budget.get('epochs', '?')} epochs, "
        f"{budget.get('evaluation_examples', '?')} evaluation examples"
    )


def _budget_lines(runs: list[Run]) -> list[str]:
    """One line per distinct budget; systems are named only when they did not all share one."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(_budget_text(run.get("budget", {})), []).append(run)
    if len(groups) == 1:
        return [f"Budget: {next(iter(groups))}."]
    labels = _labels(runs)
    return [
        f"Budget for {', '.join(labels[run['system']] for run in group)}: {text}."
        for text, group in groups.items()
    ]


def _metric_columns(kind: str) -> list[tuple[str, str]]:
    """(metrics key, column header) for the quality columns of a task's detailed table."""
    if kind == "token":
        return [("precision", "Precision"), ("recall", "Recall"), ("f1", "Entity F1")]
    return [("accuracy", "Accuracy"), ("macro_f1", "Macro-F1")]


def task_table(runs: list[Run]) -> list[str]:
    """One task in detail: quality, cost in time and memory, and the budget every system trained under."""
    first = runs[0]
    columns = _metric_columns(first["kind"])
    header = [
        "System",
        *(title for _, title in columns),
        "Train time",
        "Train ex/s",
        "Eval ex/s",
        "Peak memory (MB)",
    ]
    labels = _labels(runs)
    rows = []
    for run in runs:
        memory = run.get("peak_memory_mb")
        rows.append(
            [
                labels[run["system"]],
                *(_percent(run["metrics"].get(key)) for key, _ in columns),
                _duration(run.get("train_seconds")),
                _rate(run.get("train_examples_per_second")),
                _rate(run.get("eval_examples_per_second")),
                DASH if memory is None else str(round(memory)),
            ]
        )
    title = f"### {_task_name(first['task'])} ({first['kind']} task, {_metric_title(first)})"
    return [title, "", *_budget_lines(runs), "", *_table(header, rows)]


def _pairs(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in mapping.items())


def footer(runs: list[Run]) -> list[str]:
    """Where and how the numbers were produced, so a reader can reproduce them."""
    first = runs[0]
    seeds = ", ".join(str(seed) for seed in _unique(run.get("seed") for run in runs))
    commands = _unique(run["command"] for run in runs if run.get("command"))
    return [
        "## Environment",
        "",
        f"- Versions: {_pairs(first.get('versions', {}))}",
        f"- Hardware: {_pairs(first.get('hardware', {}))}",
        f"- Seed(s): {seeds}",
        "",
        "Commands:",
        "",
        "```",
        *commands,
        "```",
    ]


def render_markdown(runs: list[Run]) -> str:
    lines = [
        "# Accuracy benchmark",
        "",
        "Headline score per task in percent; the best per task is in bold, a dash means not run.",
        "",
        *summary_table(runs),
        "",
        "## Per task",
    ]
    for task in _tasks(runs):
        lines += ["", *task_table(_task_runs(runs, task))]
    return "\n".join([*lines, "", *footer(runs)]) + "\n"


def _colors(runs: list[Run]) -> dict[str, str]:
    """One colour per system, the same in every plot."""
    return {system: f"C{index % 10}" for index, system in enumerate(_systems(runs))}


def _save_png(figure: Figure, path: Path) -> None:
    """Render to a temporary file beside `path` and rename it, so a reader never sees half a PNG."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        figure.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plot_scores(runs: list[Run], path: Path) -> None:
    """A bar chart of headline scores per task, one panel per task."""
    tasks = _tasks(runs)
    colors = _colors(runs)
    figure = Figure(figsize=(3.2 * len(tasks) + 1, 4.2), layout="constrained")
    axes = figure.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=True):
        task_runs = _task_runs(runs, task)
        systems = [run["system"] for run in task_runs]
        bars = ax.bar(
            systems,
            [100 * run["score"] for run in task_runs],
            color=[colors[system] for system in systems],
        )
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.set_title(f"{_task_name(task)}\n{_metric_title(task_runs[0])} (%)", fontsize=10)
        ax.set_ylim(0, 105)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    _save_png(figure, path)


def _selection_key(run: Run) -> str | None:
    """The eval_* log key the checkpoint was selected on, preferring the task's own metric."""
    candidates = [f"eval_{run['metric']}"] + (["eval_accuracy"] if run["metric"] == "macro_f1" else [])
    logged = {key for record in run["history"] for key in record}
    return next((key for key in candidates if key in logged), None)


def _curve(history: list[dict], key: str, scale: float = 1.0) -> tuple[list[float], list[float]]:
    points = [
        (record["epoch"], scale * record[key]) for record in history if key in record and "epoch" in record
    ]
    return [x for x, _ in points], [y for _, y in points]


def _plot_task_curves(loss_ax: Axes, eval_ax: Axes, runs: list[Run], colors: dict[str, str]) -> None:
    """Training loss and the selection metric over epochs for every system of one task that trained."""
    metric = runs[0]["metric"]
    for run in runs:
        color = colors[run["system"]]
        loss_ax.plot(*_curve(run["history"], "loss"), color=color, label=run["system"])
        key = _selection_key(run)
        if key is not None:
            label = run["system"] if key == f"eval_{metric}" else f"{run['system']} ({key})"
            eval_ax.plot(*_curve(run["history"], key, 100), color=color, marker="o", label=label)
    name = _task_name(runs[0]["task"])
    loss_ax.set_title(f"{name}: training loss", fontsize=10)
    eval_ax.set_title(f"{name}: selection {METRIC_NAMES.get(metric, metric)} (%)", fontsize=10)
    for ax in (loss_ax, eval_ax):
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)


def plot_learning_curves(runs: list[Run], path: Path) -> bool:
    """Loss and selection-metric curves, one row per task; False (and no file) when nothing trained."""
    trained = [run for run in runs if run.get("history")]
    tasks = _tasks(trained)
    if not tasks:
        path.unlink(missing_ok=True)
        return False
    figure = Figure(figsize=(10, 3.2 * len(tasks)), layout="constrained")
    axes = figure.subplots(len(tasks), 2, squeeze=False)
    colors = _colors(runs)
    for (loss_ax, eval_ax), task in zip(axes, tasks, strict=True):
        _plot_task_curves(loss_ax, eval_ax, _task_runs(trained, task), colors)
    _save_png(figure, path)
    return True


def build(results_dir: Path) -> list[Path]:
    """Write every output for the runs found under `results_dir`; returns the paths written."""
    results_dir = Path(results_dir)
    runs = load_runs(results_dir)
    table, combined = results_dir / "table.md", results_dir / "results.json"
    scores, curves = results_dir / "scores.png", results_dir / "learning_curves.png"
    write_text_atomic(table, render_markdown(runs))
    write_text_atomic(combined, json.dumps({"runs": runs}, indent=1, ensure_ascii=False) + "\n")
    plot_scores(runs, scores)
    written = [table, combined, scores]
    if plot_learning_curves(runs, curves):
        written.append(curves)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description=(
            "Collect the accuracy benchmark's per-run records (<results>/runs/*.json) into table.md, "
            "results.json, scores.png and learning_curves.png in the same folder."
        ),
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=DEFAULT_RESULTS,
        help=f"the results folder holding runs/ (default: {DEFAULT_RESULTS})",
    )
    args = parser.parse_args(argv)
    for path in build(args.results):
        print(path)


if __name__ == "__main__":
    main()
