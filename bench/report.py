"""Turn the accuracy benchmark's per-run JSON records into the committed results.

`bench.accuracy` writes one record per (task, system, seed) run under `<results>/runs/`. This module reads
them all, groups them by (task, system) and writes, beside them, `table.md` (a summary table and one
detailed table per task, every figure the mean over seeds, the headline score with its sample standard
deviation when more than one seed ran), `results.json` (every record and the aggregated rows, in display
order) and two plots, `scores.png` (means, error bars of one standard deviation) and
`learning_curves.png` (each system's lowest seed). It only reads the records, so it can be re-run at any
time, e.g. after one more system or seed has finished.

Usage: python -m bench.report [--results bench/results/accuracy]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.common import DASH, TASK_NAMES, markdown_table, percent, save_png
from bench.systems import SYSTEMS
from lsllm.atomic import write_text_atomic

Run = dict[str, Any]

DEFAULT_RESULTS = Path("bench/results/accuracy")
SYSTEM_ORDER = tuple(SYSTEMS)  # the main systems first, then ablations and baselines
TASK_ORDER = ("sst2", "sst5", "twitter_fin", "conll2003", "wnut17")
METRIC_NAMES = {"accuracy": "acc", "macro_f1": "macro-F1", "f1": "entity F1"}
PLUS_MINUS = "\u00b1"
# Per-run figures averaged over seeds, besides every number in "metrics".
AVERAGED = (
    "score",
    "train_seconds",
    "train_examples_per_second",
    "eval_seconds",
    "eval_examples_per_second",
    "peak_memory_mb",
)
# What a (task, system) group's runs share, copied from its first run into the aggregated row.
SHARED = ("task", "kind", "metric", "evaluation_split", "system", "system_label")


def _rank(name: str, order: tuple[str, ...]) -> tuple[int, str]:
    """Known names in display order, unknown ones after them, alphabetically."""
    return (order.index(name) if name in order else len(order), name)


def _seed(run: Run) -> int:
    return run.get("seed", 0)


def _run_key(run: Run) -> tuple:
    return (_rank(run["task"], TASK_ORDER), _rank(run["system"], SYSTEM_ORDER), _seed(run))


def load_runs(results_dir: Path) -> list[Run]:
    """Every run record, sorted by task, system then seed, so all outputs list them the same way."""
    files = sorted((results_dir / "runs").glob("*.json"))
    if not files:
        raise SystemExit(f"bench.report: no run files in {results_dir / 'runs'}; run bench.accuracy first")
    runs = [json.loads(path.read_text(encoding="utf-8")) for path in files]
    return sorted(runs, key=_run_key)


def _unique(values: Iterable[Any]) -> list[Any]:
    """Distinct values in first-seen order (dict keys keep insertion order)."""
    return list(dict.fromkeys(values))


def _groups(runs: list[Run]) -> list[list[Run]]:
    """The runs of each (task, system), in the order of `runs` (sorted runs give groups sorted by seed)."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run["task"], run["system"]), []).append(run)
    return list(groups.values())


def _mean_sd(values: Iterable[Any]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the numbers given (None ignored); sd only from two on."""
    numbers = [value for value in values if isinstance(value, int | float) and not isinstance(value, bool)]
    if not numbers:
        return None, None
    return statistics.fmean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else None


def aggregate(group: list[Run]) -> Run:
    """One (task, system)'s runs as one row: the mean of every figure over seeds, sd of the score and
    metrics, the seeds and their count."""
    row = {key: group[0].get(key) for key in SHARED}
    row["seeds"] = sorted(_seed(run) for run in group)
    row["n"] = len(group)
    for key in AVERAGED:
        row[key] = _mean_sd(run.get(key) for run in group)[0]
    row["score_sd"] = _mean_sd(run["score"] for run in group)[1]
    metrics = {key: _mean_sd(run["metrics"].get(key) for run in group) for key in group[0]["metrics"]}
    row["metrics"] = {key: mean for key, (mean, _) in metrics.items() if mean is not None}
    row["metrics_sd"] = {key: sd for key, (_, sd) in metrics.items() if sd is not None}
    return row


def aggregate_runs(runs: list[Run]) -> list[Run]:
    return [aggregate(group) for group in _groups(runs)]


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


def _score_text(row: Run | None) -> str:
    """The mean headline score in percent, with '± sd (n=K)' when more than one seed ran."""
    if row is None:
        return DASH
    text = percent(row["score"])
    return text if row["n"] < 2 else f"{text} {PLUS_MINUS} {percent(row['score_sd'])} (n={row['n']})"


def summary_table(rows: list[Run]) -> list[str]:
    """Systems by tasks from aggregated rows: mean headline score in percent, the best mean per task bold."""
    tasks = _tasks(rows)
    firsts = {task: _task_runs(rows, task)[0] for task in tasks}
    header = ["System", *(f"{_task_name(task)} {_metric_title(firsts[task])}" for task in tasks)]
    by_pair = {(row["task"], row["system"]): row for row in rows}
    best = {task: max(row["score"] for row in _task_runs(rows, task)) for task in tasks}
    labels = _labels(rows)
    table = []
    for system in _systems(rows):
        cells = [labels[system]]
        for task in tasks:
            row = by_pair.get((task, system))
            cell = _score_text(row)
            cells.append(f"**{cell}**" if row is not None and row["score"] == best[task] else cell)
        table.append(cells)
    return markdown_table(header, table)


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
        f"Budget for {', '.join(_unique(labels[run['system']] for run in group))}: {text}."
        for text, group in groups.items()
    ]


def _metric_columns(kind: str) -> list[tuple[str, str]]:
    """(metrics key, column header) for the quality columns of a task's detailed table."""
    if kind == "token":
        return [("precision", "Precision"), ("recall", "Recall"), ("f1", "Entity F1")]
    return [("accuracy", "Accuracy"), ("macro_f1", "Macro-F1")]


def task_table(rows: list[Run], runs: list[Run]) -> list[str]:
    """One task in detail from its aggregated rows (means over seeds): quality, cost in time and memory,
    the seeds, and the budget every system trained under (from the task's individual runs)."""
    first = rows[0]
    columns = _metric_columns(first["kind"])
    header = [
        "System",
        *(title for _, title in columns),
        "Train time",
        "Train ex/s",
        "Eval ex/s",
        "Peak memory (MB)",
        "Seeds",
    ]
    labels = _labels(rows)
    table = []
    for row in rows:
        memory = row.get("peak_memory_mb")
        table.append(
            [
                labels[row["system"]],
                *(percent(row["metrics"].get(key)) for key, _ in columns),
                _duration(row.get("train_seconds")),
                _rate(row.get("train_examples_per_second")),
                _rate(row.get("eval_examples_per_second")),
                DASH if memory is None else str(round(memory)),
                _seed_list(row["seeds"]),
            ]
        )
    title = f"### {_task_name(first['task'])} ({first['kind']} task, {_metric_title(first)})"
    return [title, "", *_budget_lines(runs), "", *markdown_table(header, table)]


def _seed_list(seeds: Iterable[Any]) -> str:
    return ", ".join(str(seed) for seed in seeds)


def _pairs(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in mapping.items())


def footer(runs: list[Run]) -> list[str]:
    """Where and how the numbers were produced, so a reader can reproduce them."""
    first = runs[0]
    seeds = _seed_list(sorted(set(map(_seed, runs))))
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


def int8_table(runs: list[Run]) -> list[str]:
    """Each lsllm run scored again with --precision int8: the score it keeps and the speed it gains."""
    quantized = [run for run in runs if "int8" in run]
    if not quantized:
        return []
    header = ["Task", "System", "Seed", "fp32", "int8", "int8 - fp32 (points)", "Eval ex/s fp32", "int8"]
    rows = [
        [
            f"{_task_name(run['task'])} {_metric_title(run)}",
            run["system_label"],
            str(_seed(run)),
            percent(run["score"]),
            percent(run["int8"]["score"]),
            percent(run["int8"]["score"] - run["score"], "+.1f"),
            _rate(run["eval_examples_per_second"]),
            _rate(run["eval_examples_per_second"] * run["eval_seconds"] / run["int8"]["eval_seconds"]),
        ]
        for run in quantized
    ]
    intro = (
        'The same trained runs, evaluated again after `load(..., precision="int8")` (CPU: int8 weights'
        " per output channel, activations quantised per call), on the same evaluation split."
    )
    return ["## Prediction with --precision int8", "", intro, "", *markdown_table(header, rows), ""]


def render_markdown(runs: list[Run]) -> str:
    rows = aggregate_runs(runs)
    lines = [
        "# Accuracy benchmark",
        "",
        "Headline score per task in percent, the mean over seeds; where more than one seed ran, "
        f"{PLUS_MINUS} the sample standard deviation and the number of seeds n. The best mean per task "
        "is in bold, a dash means not run. The per-task tables show means over seeds.",
        "",
        *summary_table(rows),
        "",
        "## Per task",
    ]
    for task in _tasks(rows):
        lines += ["", *task_table(_task_runs(rows, task), _task_runs(runs, task))]
    return "\n".join([*lines, "", *int8_table(runs), *footer(runs)]) + "\n"


def _colors(runs: list[Run]) -> dict[str, str]:
    """One colour per system, the same in every plot."""
    return {system: f"C{index % 10}" for index, system in enumerate(_systems(runs))}


def _plot_task_scores(ax: Axes, rows: list[Run], colors: dict[str, str]) -> None:
    """One task's mean scores as bars, with sd error bars where more than one seed ran."""
    systems = [row["system"] for row in rows]
    bars = ax.bar(
        systems,
        [100 * row["score"] for row in rows],
        color=[colors[system] for system in systems],
    )
    spread = [
        (system, 100 * row["score"], 100 * row["score_sd"])
        for system, row in zip(systems, rows, strict=True)
        if row["n"] > 1
    ]
    if spread:
        names, means, sds = zip(*spread, strict=True)
        ax.errorbar(names, means, yerr=sds, fmt="none", ecolor="black", capsize=3)
    ax.bar_label(bars, fmt="%.1f", fontsize=8, label_type="center")
    ax.set_title(f"{_task_name(rows[0]['task'])}\n{_metric_title(rows[0])} (%)", fontsize=10)
    ax.set_ylim(0, 105)
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)


def plot_scores(runs: list[Run], path: Path) -> None:
    """A bar chart of mean headline scores, one panel per task; error bars (one sd) where n > 1."""
    rows = aggregate_runs(runs)
    tasks = _tasks(rows)
    figure = Figure(figsize=(3.2 * len(tasks) + 1, 4.6), layout="constrained")
    axes = figure.subplots(1, len(tasks), squeeze=False)[0]
    colors = _colors(runs)
    for ax, task in zip(axes, tasks, strict=True):
        _plot_task_scores(ax, _task_runs(rows, task), colors)
    if any(row["n"] > 1 for row in rows):
        figure.suptitle(f"Mean over seeds; error bars: {PLUS_MINUS}1 sample standard deviation", fontsize=10)
    save_png(figure, path)


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
    """Loss and selection-metric curves of each system's lowest seed, one row per task; False (and no
    file) when nothing trained."""
    lowest = [group[0] for group in _groups(sorted(runs, key=_run_key))]
    trained = [run for run in lowest if run.get("history")]
    tasks = _tasks(trained)
    if not tasks:
        path.unlink(missing_ok=True)
        return False
    figure = Figure(figsize=(10, 3.2 * len(tasks)), layout="constrained")
    axes = figure.subplots(len(tasks), 2, squeeze=False)
    colors = _colors(runs)
    for (loss_ax, eval_ax), task in zip(axes, tasks, strict=True):
        _plot_task_curves(loss_ax, eval_ax, _task_runs(trained, task), colors)
    seeds = _seed_list(sorted(set(map(_seed, trained))))
    figure.suptitle(f"Learning curves of each system's lowest seed: {seeds}", fontsize=10)
    save_png(figure, path)
    return True


def build(results_dir: Path) -> list[Path]:
    """Write every output for the runs found under `results_dir`; returns the paths written."""
    results_dir = Path(results_dir)
    runs = load_runs(results_dir)
    table, combined = results_dir / "table.md", results_dir / "results.json"
    scores, curves = results_dir / "scores.png", results_dir / "learning_curves.png"
    write_text_atomic(table, render_markdown(runs))
    document = {"runs": runs, "aggregated": aggregate_runs(runs)}
    write_text_atomic(combined, json.dumps(document, indent=1, ensure_ascii=False) + "\n")
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
