"""bench.report turns per-run records into the committed table, combined JSON and plots."""

import json
from pathlib import Path

import pytest

from bench.report import build, main

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
    assert "| HF LoRA | 71.0 | 69.0 | 70.0 | 8m32s | 3.9 | 20.3 | 2890 |" in table
    assert f"| Zero-shot | 50.0 | 48.0 | {DASH} | {DASH} | 20.3 | 2890 |" in table
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

    for name in ("scores.png", "learning_curves.png"):
        data = (results / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE
        assert len(data) > 10_000
    assert not list(results.glob(".*.tmp")) and not list(results.glob(".*.png"))


def test_main_without_runs_exits_with_one_line(tmp_path: Path):
    with pytest.raises(SystemExit, match="no run files"):
        main(["--results", str(tmp_path)])
