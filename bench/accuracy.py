"""Reproduce the paper's claims at small scale: lsllm against the usual alternatives on five real tasks.

    python -m bench.accuracy                      # the full table, seed 0 (about 3 h on 2 CPU cores)
    python -m bench.accuracy --tasks conll2003    # one task
    python -m bench.accuracy --tasks sst2 --systems ls-llama hf-lora --seeds 0 1 2   # more seeds
    python -m bench.accuracy --epochs 4 --results bench/results/accuracy-4-epochs   # a longer budget
    python -m bench.report                        # rebuild table and plots from the saved runs

Each (task, system, seed) runs in its own process (clean peak-memory figures, and a crash loses only
that run) and is saved as runs/<task>__<system>__seed<K>.json; finished runs are skipped when rerun,
so adding seeds later runs only the new ones. The seed drives the training subsample, the
initialisation and the data order; bench.report averages over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import sys
from pathlib import Path

from bench.common import (
    DATA,
    RESULTS,
    SCRATCH,
    Settings,
    argument_parser,
    command_line,
    environment,
    fresh_dir,
    peak_rss_mb,
    read_jsonl,
    run_child,
    task_labels,
)
from bench.datasets import SPLITS, TASKS, TIERS, Task, prepare
from bench.systems import SYSTEMS
from lsllm.atomic import write_json_atomic

# CoNLL-2003 first: it carries the paper's central claim. The pooling ablation comes last.
RUN_ORDER = ("conll2003", "sst2", "wnut17", "twitter_fin", "sst5")
ABLATIONS = ("ls-unllama-max", "ls-llama-head-bias")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argument_parser("bench.accuracy", __doc__)
    parser.add_argument("--data", type=Path, default=DATA, help="dataset folder")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(RUN_ORDER), help="tasks")
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS), help="systems")
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0],
        help="seeds for subsampling, initialisation, data order; every (task, system) runs once per seed",
    )
    parser.add_argument("--results", type=Path, default=RESULTS / "accuracy", help="where runs are saved")
    parser.add_argument("--work", type=Path, default=SCRATCH, help="scratch space")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="shrink every split (smoke tests), e.g. 0.02"
    )
    parser.add_argument(
        "--tier",
        choices=list(TIERS),
        default="base",
        help="training data: the budget's examples (base), 4x as many (large), or the whole split (full);"
        " give each tier its own --results folder",
    )
    parser.add_argument(
        "--epochs",
        type=float,
        help="train every system this many epochs instead of the task's budget (a longer budget that keeps"
        " the comparison fair); give it its own --results folder",
    )
    parser.add_argument("--force", action="store_true", help="rerun runs that already have results")
    parser.add_argument("--one", nargs=3, metavar=("TASK", "SYSTEM", "SEED"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_name(task: str, system: str, seed: int) -> str:
    """The one name of a run: its record, scratch folder and log are all called this."""
    return f"{task}__{system}__seed{seed}"


def record_path(results: Path, task: str, system: str, seed: int) -> Path:
    return results / "runs" / f"{run_name(task, system, seed)}.json"


def budgeted(task: Task, epochs: float | None) -> Task:
    """The task with its budget's epochs replaced, so that every system reads the same longer budget."""
    if epochs is None:
        return task
    return dataclasses.replace(task, budget=dataclasses.replace(task.budget, epochs=epochs))


def trained_epochs(history: list[dict]) -> float:
    """Epochs a run actually trained, from its Trainer log: a system with its own epochs, or one stopped
    by a time budget, differs from the task's budget."""
    return max((entry.get("epoch", 0.0) for entry in history), default=0.0)


def run_one(args: argparse.Namespace, task_name: str, system_name: str, seed: int, command: str) -> None:
    """Run one system on one task with one seed in this process and save its record."""
    task, system = budgeted(TASKS[task_name], args.epochs), SYSTEMS[system_name]
    settings = Settings(seed=seed)
    paths = prepare(task, args.data, args.work / "data", seed, args.scale, args.tier)
    labels = task_labels(task, paths)
    work_dir = args.work / "runs" / run_name(task_name, system_name, seed)
    fresh_dir(work_dir)
    if system.time_of:  # trains for as long as that system took on the same task and seed
        reference = record_path(args.results, task_name, system.time_of, seed)
        if not reference.exists():
            raise SystemExit(f"bench: {system_name} needs the record of {system.time_of} first: {reference}")
        seconds = json.loads(reference.read_text(encoding="utf-8"))["train_seconds"]
        result = system.run(task, paths, labels, settings, work_dir, time_budget=seconds)
    else:
        result = system.run(task, paths, labels, settings, work_dir)
    train_examples, selection_examples, evaluation_examples = (len(read_jsonl(paths[s])) for s in SPLITS)
    epochs_trained = trained_epochs(result["history"])
    record = {
        "task": task.name,
        "kind": task.kind,
        "metric": task.metric,
        "evaluation_split": task.evaluation_split,
        "system": system_name,
        "system_label": system.label,
        "seed": seed,
        "command": command,
        **environment(),
        "budget": {
            "train_examples": train_examples,
            "selection_examples": selection_examples,
            "epochs": task.budget.epochs,
            "epochs_trained": epochs_trained,  # a system with its own epochs, or stopped by time, differs
            "max_length": task.budget.max_length,
            "evaluation_examples": evaluation_examples,
            "scale": args.scale,
            "tier": args.tier,
        },
        "settings": settings.to_dict(),
        "metrics": result["metrics"],
        "score": result["metrics"][task.metric],
        "train_seconds": result["train_seconds"],
        "train_examples_per_second": (
            train_examples * epochs_trained / result["train_seconds"] if result["train_seconds"] else None
        ),
        "eval_seconds": result["eval_seconds"],
        "eval_examples_per_second": evaluation_examples / result["eval_seconds"],
        "peak_memory_mb": peak_rss_mb(),
        "history": result["history"],
        "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if "int8" in result:
        record["int8"] = {**result["int8"], "score": result["int8"]["metrics"][task.metric]}
    write_json_atomic(record_path(args.results, task_name, system_name, seed), record)
    shutil.rmtree(work_dir, ignore_errors=True)


def jobs(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """(task, system, seed) runs still to do: the main systems seed by seed, task by task, then the
    ablations; runs with a saved record are left out unless --force."""
    order = [t for t in RUN_ORDER if t in args.tasks] + [t for t in args.tasks if t not in RUN_ORDER]
    runs = [
        (task, system, seed)
        for group in (
            [s for s in args.systems if s not in ABLATIONS],
            [s for s in args.systems if s in ABLATIONS],
        )
        for seed in dict.fromkeys(args.seeds)
        for task in order
        for system in group
        if SYSTEMS[system].applies_to(TASKS[task])
    ]
    return [run for run in runs if args.force or not record_path(args.results, *run).exists()]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = command_line("bench.accuracy", argv)
    if args.one:
        task, system, seed = args.one
        run_one(args, task, system, int(seed), command=os.environ.get("BENCH_COMMAND", command))
        return
    todo = jobs(args)
    logs = args.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    failed = []
    for number, (task, system, seed) in enumerate(todo, start=1):
        print(f"[{number}/{len(todo)}] {task} / {system} / seed {seed} ...", end=" ", flush=True)
        log = logs / f"{run_name(task, system, seed)}.log"
        env = {**os.environ, "BENCH_COMMAND": command}
        succeeded, seconds = run_child("bench.accuracy", argv, [task, system, str(seed)], log, env)
        minutes = seconds / 60
        if not succeeded:
            failed.append(f"{task}/{system}/seed{seed}")
            print(f"FAILED after {minutes:.1f} min; see {log}")
        else:
            print(f"done in {minutes:.1f} min")
    from bench.report import build

    if any((args.results / "runs").glob("*.json")):
        for path in build(args.results):
            print(f"wrote {path}")
    if failed:
        raise SystemExit(f"bench: {len(failed)} run(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
