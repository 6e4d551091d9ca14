"""bench.report turns per-run records into the committed table, combined JSON and plots, averaging
over seeds; bench.accuracy lists and names one job per (task, system, seed)."""

import json
from pathlib import Path

import pytest

from bench.accuracy import jobs, parse_args, record_path, trained_epochs
from bench.report import aggregate, build, main, render_markdown

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DASH = "\u2013"  # the en dash that marks an empty cell


def history(metric_key: str, values: list[float]) -> list[dict]:
    records = []
    for epoch, value in enumerate(values, start=1):
        records.append({"step": 10 * epoch - 5, "epoch": epoch - 0.5, "loss": 1.0 / epoch})
        records.append({"step": 10 * epoch, "epoch": float(epoch), metric_key: value, "eval_loss": 0.9})
    return records


def record(task: str, system: str, label: str, score: float, **extra) -> dict:
    token = task == "conll2003"
    metric = "f1" if token else "accuracy"
    metrics = (
        {"precision": score + 0.01, "recall": score - 0.01, "f1": score, "accuracy": 0.95, "per_type": {}}
        if token
        else {"accuracy": score, "macro_f1": score - 0.02, "per_class": {}, "confusion_matrix": {}}
    )
    base = {
        "task": task,
        "kind": "token" if token else "sequence",
        "metric": metric,
        "evaluation_split": "test" if token else "dev",
        "system": system,
        "system_label": label,
        "seed": 0,
        "command": f"python -m bench.accuracy --task {task} --system {system}",
        "versions": {"python": "3.11.2", "torch": "2.5.0"},
        "hardware": {"cpu": "Test CPU", "cores": 2},
        "budget": {
            "train_examples": 1000,
            "selection_examples": 300,
            "epochs": 2,
            "max_length": 128,
            "evaluation_examples": 872,
        },
        "settings": {},
        "metrics": metrics,
        "score": score,
        "train_seconds": 512.3,
        "train_examples_per_second": 3.94,
        "eval_seconds": 170.2,
        "eval_examples_per_second": 20.31,
        "peak_memory_mb": 2890.5,
        "history": history(f"eval_{metric}", [score - 0.1, score]),
        "finished_at": "2026-11-21T19:40:00",
    }
    return base | extra


RUNS = [
    record("conll2003", "hf-lora", "HF LoRA", 0.700),
    record("sst2", "zero-shot", "Zero-shot", 0.5, history=[], train_seconds=0, train_examples_per_second=0),
    record("conll2003", "ls-unllama", "LS-unLLaMA", 0.612),
    record("sst2", "hf-lora", "HF LoRA", 0.887),
    record("sst2", "ls-unllama", "LS-unLLaMA", 0.912),
]


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    for index, run in enumerate(RUNS):
        (runs / f"{index}-{run['task']}-{run['system']}.json").write_text(json.dumps(run), encoding="utf-8")
    return tmp_path


def summary_rows(table: str) -> list[list[str]]:
    """The cells of the first markdown table in `table`."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_build_writes_table_json_and_plots(results: Path):
    written = build(results)

    names = ["table.md", "results.json", "scores.png", "learning_curves.png"]
    assert written == [results / name for name in names]

    table = (results / "table.md").read_text(encoding="utf-8")
    header, _, *rows = summary_rows(table)
    assert header == ["System", "SST-2 dev acc", "CoNLL-2003 test entity F1"]
    assert rows == [
        ["LS-unLLaMA", "**91.2**", "61.2"],
        ["HF LoRA", "88.7", "**70.0**"],
        ["Zero-shot", "50.0", DASH],
    ]
    assert "| HF LoRA | 71.0 | 69.0 | 70.0 | 8m32s | 3.9 | 20.3 | 2890 | 0 |" in table
    assert f"| Zero-shot | 50.0 | 48.0 | {DASH} | {DASH} | 20.3 | 2890 | 0 |" in table
    assert (
        "Budget: 1000 training examples, 300 selection examples, 2 epochs, 872 evaluation examples." in table
    )
    assert "python 3.11.2, torch 2.5.0" in table
    assert "python -m bench.accuracy --task conll2003 --system hf-lora" in table

    combined = json.loads((results / "results.json").read_text(encoding="utf-8"))
    order = [(run["task"], run["system"]) for run in combined["runs"]]
    assert order == [
        ("sst2", "ls-unllama"),
        ("sst2", "hf-lora"),
        ("sst2", "zero-shot"),
        ("conll2003", "ls-unllama"),
        ("conll2003", "hf-lora"),
    ]
    assert combined["runs"][0] == RUNS[4]
    assert [row["n"] for row in combined["aggregated"]] == [1] * 5
    assert combined["aggregated"][0]["score"] == 0.912

    for name in ("scores.png", "learning_curves.png"):
        data = (results / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE
        assert len(data) > 10_000
    assert not list(results.glob(".*.tmp")) and not list(results.glob(".*.png"))


def test_main_without_runs_exits_with_one_line(tmp_path: Path):
    with pytest.raises(SystemExit, match="no run files"):
        main(["--results", str(tmp_path)])


def seeded(task: str, system: str, label: str, scores: list[float], **extra) -> list[dict]:
    """One record per seed 0, 1, ... with the given scores; train_seconds grows with the seed."""
    return [
        record(task, system, label, score, seed=seed, train_seconds=100.0 * (seed + 1), **extra)
        for seed, score in enumerate(scores)
    ]


# By its best seed HF LoRA (96.0) would win SST-2; by the mean LS-unLLaMA (92.0 against 91.0) does.
SEEDED = [
    *seeded("sst2", "ls-unllama", "LS-unLLaMA", [0.90, 0.92, 0.94]),
    *seeded("sst2", "hf-lora", "HF LoRA", [0.96, 0.86]),
    *seeded("sst2", "zero-shot", "Zero-shot", [0.5], history=[]),
]


def test_aggregate_averages_every_figure_over_seeds():
    row = aggregate(SEEDED[:3])
    assert (row["task"], row["system"], row["seeds"], row["n"]) == ("sst2", "ls-unllama", [0, 1, 2], 3)
    assert row["score"] == pytest.approx(0.92)
    assert row["score_sd"] == pytest.approx(0.02)  # sample sd: sqrt((0.02² + 0 + 0.02²) / 2)
    assert row["metrics"] == pytest.approx({"accuracy": 0.92, "macro_f1": 0.90})
    assert row["metrics_sd"] == pytest.approx({"accuracy": 0.02, "macro_f1": 0.02})
    assert row["train_seconds"] == pytest.approx(200.0)
    assert row["peak_memory_mb"] == pytest.approx(2890.5)

    single = aggregate(SEEDED[-1:])
    assert (single["n"], single["score"], single["score_sd"], single["metrics_sd"]) == (1, 0.5, None, {})


def test_table_shows_mean_sd_and_n_and_bolds_the_best_mean(tmp_path: Path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for run in reversed(SEEDED):  # file order must not matter
        path = record_path(tmp_path, run["task"], run["system"], run["seed"])
        path.write_text(json.dumps(run), encoding="utf-8")
    build(tmp_path)

    table = (tmp_path / "table.md").read_text(encoding="utf-8")
    _, _, *rows = summary_rows(table)
    assert rows == [
        ["LS-unLLaMA", "**92.0 \u00b1 2.0 (n=3)**"],
        ["HF LoRA", "91.0 \u00b1 7.1 (n=2)"],
        ["Zero-shot", "50.0"],
    ]
    assert "| LS-unLLaMA | 92.0 | 90.0 | 3m20s | 3.9 | 20.3 | 2890 | 0, 1, 2 |" in table
    assert "| HF LoRA | 91.0 | 89.0 | 2m30s | 3.9 | 20.3 | 2890 | 0, 1 |" in table
    assert "Budget: 1000 training examples" in table  # one budget line, not one per seed
    assert "- Seed(s): 0, 1, 2" in table

    combined = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert [(run["system"], run["seed"]) for run in combined["runs"]] == [
        ("ls-unllama", 0),
        ("ls-unllama", 1),
        ("ls-unllama", 2),
        ("hf-lora", 0),
        ("hf-lora", 1),
        ("zero-shot", 0),
    ]
    aggregated = {row["system"]: row for row in combined["aggregated"]}
    assert [aggregated[name]["n"] for name in ("ls-unllama", "hf-lora", "zero-shot")] == [3, 2, 1]
    assert aggregated["hf-lora"]["score_sd"] == pytest.approx(0.0707, abs=1e-4)
    for name in ("scores.png", "learning_curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE


def test_jobs_are_one_per_task_system_and_seed_and_skip_saved_records(tmp_path: Path):
    def pending(*extra: str) -> list[tuple[str, str, int]]:
        argv = ["--tasks", "sst2", "conll2003", "--systems", "ls-llama", "zero-shot", "ls-unllama-max"]
        return jobs(parse_args([*argv, "--seeds", "0", "1", "--results", str(tmp_path), *extra]))

    everything = [
        ("conll2003", "ls-llama", 0),
        ("sst2", "ls-llama", 0),
        ("sst2", "zero-shot", 0),
        ("conll2003", "ls-llama", 1),
        ("sst2", "ls-llama", 1),
        ("sst2", "zero-shot", 1),
        ("sst2", "ls-unllama-max", 0),  # the ablation last, on SST-2 only
        ("sst2", "ls-unllama-max", 1),
    ]
    assert pending() == everything

    saved = record_path(tmp_path, "sst2", "ls-llama", 1)
    assert saved == tmp_path / "runs" / "sst2__ls-llama__seed1.json"
    saved.parent.mkdir()
    saved.write_text("{}")
    (tmp_path / "runs" / "sst2__zero-shot.json").write_text("{}")  # old naming: not a seed-0 record
    assert pending() == [job for job in everything if job != ("sst2", "ls-llama", 1)]
    assert pending("--force") == everything

    assert parse_args([]).seeds == [0]
    assert parse_args(["--one", "sst2", "ls-llama", "2"]).one == ["sst2", "ls-llama", "2"]


def test_int8_scores_sit_next_to_the_fp32_scores_of_the_same_run():
    quantized = record("conll2003", "ls-unllama", "LS-unLLaMA", 0.577)
    quantized["int8"] = {"metrics": {"f1": 0.571}, "score": 0.571, "eval_seconds": 85.1}
    markdown = render_markdown([quantized, record("sst2", "hf-lora", "HF LoRA", 0.8)])
    assert "## Prediction with --precision int8" in markdown
    # 872 examples in 170.2 s (fp32) and in 85.1 s (int8)
    assert "| CoNLL-2003 test entity F1 | LS-unLLaMA | 0 | 57.7 | 57.1 | -0.6 | 20.3 | 40.6 |" in markdown
    assert "HF LoRA | 0 |" not in markdown  # runs without an int8 evaluation are not listed


def test_no_int8_section_without_int8_evaluations():
    assert "int8" not in render_markdown([record("sst2", "hf-lora", "HF LoRA", 0.8)])


def test_training_speed_counts_the_epochs_a_run_trained_not_the_budgets():
    stopped_by_time = [{"loss": 1.2, "epoch": 0.5}, {"eval_accuracy": 0.6, "epoch": 1.25}, {"runtime": 9}]
    assert trained_epochs(stopped_by_time) == 1.25
    assert trained_epochs([]) == 0.0  # zero-shot: nothing trained
