"""The transformers + peft baseline runs end to end and is scored by lsllm's own scorer."""

import pytest

from bench.common import Settings
from bench.datasets import TASKS
from bench.hf_baseline import run
from tests.helpers import ner_rows, sentiment_rows, write_splits


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # as on CPUs without and with bf16 units
@pytest.mark.parametrize(
    "task, rows, labels, metric",
    [
        ("sst2", sentiment_rows, ["neg", "pos"], "accuracy"),
        ("conll2003", ner_rows, ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"], "f1"),
    ],
)
def test_the_hf_baseline_trains_selects_on_each_epoch_and_scores_the_evaluation_split(
    tiny_model, tmp_path, monkeypatch, task, rows, labels, metric, precision
):
    monkeypatch.setattr("bench.recipe.precision", lambda: precision)  # not whatever this CPU would pick
    paths = write_splits(tmp_path, rows, {"train": 16, "selection": 8, "evaluation": 8})
    settings = Settings(batch_size=8)
    result = run(TASKS[task], paths, labels, str(tiny_model), settings, tmp_path / "work", lora=True)
    selections = [record for record in result["history"] if f"eval_{metric}" in record]
    assert [record["epoch"] for record in selections] == [1.0, 2.0]  # the budget's two epochs
    assert 0.0 <= result["metrics"][metric] <= 1.0 and result["train_seconds"] > 0


def test_the_speed_benchmark_trains_the_same_recipe_in_the_attention_mode_asked(
    tiny_model, tmp_path, monkeypatch
):
    from bench.perf import train_baseline

    monkeypatch.setattr("bench.perf.precision", lambda: "fp32")
    monkeypatch.setattr("bench.recipe.precision", lambda: "fp32")
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    paths = write_splits(tmp_path, ner_rows, {"train": 16, "selection": 8})
    result = train_baseline(
        TASKS["conll2003"],
        "bidirectional",
        paths,
        labels,
        str(tiny_model),
        Settings(batch_size=8),
        tmp_path,
        "none",
    )
    selections = [record for record in result["history"] if "eval_f1" in record]
    assert [record["epoch"] for record in selections] == [1.0, 2.0]
    assert len(result["lengths"]) == 16 and all(length > 0 for length in result["lengths"])
