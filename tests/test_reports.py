"""The pictures of a run: what they plot equals the training log's and the metrics' numbers, they are valid
PNGs of a readable size, and a picture that cannot be drawn is a warning, never a failure."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from lsllm.metrics import multilabel_metrics, regression_metrics, sequence_metrics, token_metrics
from lsllm.reports import (
    class_scores,
    class_scores_figure,
    confusion_figure,
    curves_figure,
    draw_run,
    draw_scores,
    learning_curves,
    read_log,
    scatter_figure,
)

LOG = [
    {"step": 0, "mntp_step": 1, "mntp_loss": 9.0},  # MNTP records are not training losses
    {"step": 1, "epoch": 0.5, "loss": 1.25, "grad_norm": 3.0, "learning_rate": 1e-3},
    {"step": 2, "epoch": 1.0, "loss": 0.75, "grad_norm": 2.0, "learning_rate": 5e-4},
    {"step": 2, "epoch": 1.0, "eval_loss": 0.8, "eval_accuracy": 0.5, "eval_macro_f1": 0.4},
    {"step": 3, "epoch": 1.5, "loss": 0.5, "grad_norm": 1.0, "learning_rate": 2e-4},
    {"step": 4, "epoch": 2.0, "loss": 0.25, "grad_norm": 1.0, "learning_rate": 0.0},
    {"step": 4, "epoch": 2.0, "eval_loss": 0.6, "eval_accuracy": 0.75, "eval_macro_f1": 0.7},
    {"step": 4, "epoch": 2.0, "train_runtime": 1.0, "train_loss": 0.69},
]
SEQUENCE = sequence_metrics([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], ["neg", "pos", "neutral"])
TOKEN_OUTCOMES = (
    [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]],
    [["B-PER", "I-PER", "O", "O"], ["B-LOC", "B-PER"]],
)
TOKEN = token_metrics(*TOKEN_OUTCOMES)
MULTI = multilabel_metrics(
    [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]],
    [[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]],
    ["toxic", "insult", "threat"],
    [0.5, 0.35, 0.6],
)
REGRESSION_OUTCOMES = ([1.0, 2.0, 3.0, 4.0, 5.0], [1.5, 1.5, 3.5, 4.0, 4.5])
REGRESSION = regression_metrics(*REGRESSION_OUTCOMES)


def write_log(path, records, torn_line=True):
    text = "".join(json.dumps(r) + "\n" for r in records)
    path.write_text(text + ('{"step": 5, "lo' if torn_line else ""), encoding="utf-8")
    return path


def test_learning_curves_hold_the_logs_losses_and_dev_metric(tmp_path):
    records = read_log(write_log(tmp_path / "training_log.jsonl", LOG))  # the torn last line is skipped
    assert records == LOG
    curves = learning_curves(records, "accuracy")
    assert (curves.train_steps, curves.train_loss) == ([1, 2, 3, 4], [1.25, 0.75, 0.5, 0.25])
    assert (curves.eval_steps, curves.eval_loss, curves.eval_metric) == ([2, 4], [0.8, 0.6], [0.5, 0.75])
    train, dev = curves_figure(curves, "run").axes[0].lines
    assert train.get_xydata().tolist() == [[1, 1.25], [2, 0.75], [3, 0.5], [4, 0.25]]
    assert dev.get_xydata().tolist() == [[2, 0.8], [4, 0.6]]
    metric, best = curves_figure(curves, "run").axes[1].lines
    assert metric.get_xydata().tolist() == [[2, 0.5], [4, 0.75]]
    assert best.get_xydata().tolist() == [[4, 0.75]] and "best: 0.750 at step 4" in best.get_label()


def test_the_confusion_matrix_picture_shows_the_metrics_counts():
    figure = confusion_figure(SEQUENCE, "test: test.jsonl")
    axes = figure.axes[0]
    expected = [[1, 1, 0], [0, 1, 0], [1, 0, 2]]  # rows true, columns predicted
    assert SEQUENCE["confusion_matrix"]["matrix"] == expected
    assert np.asarray(axes.images[0].get_array()).tolist() == expected
    assert [t.get_text() for t in axes.texts] == [str(n) for row in expected for n in row]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["neg", "pos", "neutral"]
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("predicted", "true")


def test_the_per_type_picture_shows_each_types_scores_and_the_overall_ones():
    scores = class_scores(TOKEN)
    # by hand: PER 1 of 1 found, 1 of 2 predicted; LOC 1 of 2 found, 1 of 1 predicted; all 2 of 3, 2 of 3
    assert scores.names == ["LOC", "PER", "all"]
    assert scores.precision == pytest.approx([1.0, 0.5, 2 / 3])
    assert scores.recall == pytest.approx([0.5, 1.0, 2 / 3])
    assert scores.f1 == pytest.approx([2 / 3, 2 / 3, 2 / 3])
    assert scores.support == [2, 1, 3]
    axes = class_scores_figure(TOKEN, "test").axes[0]
    precision, recall, f1 = (container.patches for container in axes.containers[:3])
    assert [bar.get_width() for bar in precision] == pytest.approx(scores.precision)
    assert [bar.get_width() for bar in recall] == pytest.approx(scores.recall)
    assert [bar.get_width() for bar in f1] == pytest.approx(scores.f1)
    assert [t.get_text() for t in axes.get_yticklabels()] == ["LOC (2)", "PER (1)", "all (3)"]


def test_the_per_label_picture_shows_each_labels_scores_and_threshold():
    scores = class_scores(MULTI)
    # by hand: toxic and insult all found and nothing else; threat 1 of its 2 found, 1 of 2 predicted right;
    # all: 5 of 6 found, 5 of 6 predicted right
    assert scores.names == ["toxic", "insult", "threat", "all"]
    assert scores.precision == pytest.approx([1.0, 1.0, 0.5, 5 / 6])
    assert scores.recall == pytest.approx([1.0, 1.0, 0.5, 5 / 6])
    assert scores.support == [2, 2, 2, 6]
    assert scores.thresholds == [0.5, 0.35, 0.6, None]
    axes = class_scores_figure(MULTI, "test").axes[0]
    assert [bar.get_width() for bar in axes.containers[2].patches] == pytest.approx(scores.f1)
    ticks = [t.get_text() for t in axes.get_yticklabels()]
    assert ticks == ["toxic (2, t=0.50)", "insult (2, t=0.35)", "threat (2, t=0.60)", "all (6)"]


def test_the_regression_picture_plots_each_prediction_against_its_true_value():
    axes = scatter_figure(REGRESSION, *REGRESSION_OUTCOMES, "test").axes[0]
    assert axes.collections[0].get_offsets().tolist() == [
        list(p) for p in zip(*REGRESSION_OUTCOMES, strict=True)
    ]
    assert axes.lines[0].get_xydata().tolist() == [[1.0, 1.0], [5.0, 5.0]]  # predicted = true
    assert f"MSE {REGRESSION['mse']:.4g}" in axes.get_title() and "5 examples" in axes.get_title()


def test_a_regression_runs_curves_star_its_lowest_dev_mse():
    records = [{"step": 1, "loss": 2.0}, {"step": 1, "eval_mse": 1.5}, {"step": 2, "eval_mse": 0.5}]
    records.append({"step": 3, "eval_mse": 0.9})
    curves = learning_curves(records, "mse")
    assert curves.lower_is_better and curves.eval_metric == [1.5, 0.5, 0.9]
    _, best = curves_figure(curves, "run").axes[1].lines
    assert best.get_xydata().tolist() == [[2, 0.5]]


def assert_png(path, min_side=300, max_side=3000):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert min_side <= min(image.size) and max(image.size) <= max_side
        assert sum(count > 0 for count in image.convert("L").histogram()) > 20  # drawn, not blank


def test_a_run_folder_gets_its_pictures(tmp_path):
    log = write_log(tmp_path / "training_log.jsonl", LOG)
    written = draw_run(tmp_path, log, "accuracy", SEQUENCE, ([0], [0]), "test: test.jsonl")
    assert written == [tmp_path / "learning_curves.png", tmp_path / "confusion_matrix.png"]
    for path in written:
        assert_png(path)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left over


@pytest.mark.parametrize(
    ("metrics", "outcomes", "name"),
    [
        (SEQUENCE, None, "confusion_matrix.png"),
        (TOKEN, TOKEN_OUTCOMES, "per_type_f1.png"),
        (MULTI, None, "per_label_f1.png"),
        (REGRESSION, REGRESSION_OUTCOMES, "predicted_vs_true.png"),
    ],
)
def test_evaluation_pictures_sit_beside_the_metrics_file(tmp_path, metrics, outcomes, name):
    assert draw_scores(metrics, tmp_path, "eval-test-", "test", outcomes) == [tmp_path / f"eval-test-{name}"]
    assert_png(tmp_path / f"eval-test-{name}")


def test_a_picture_that_cannot_be_drawn_is_a_warning(tmp_path, caplog):
    missing_log = tmp_path / "no-log.jsonl"
    with caplog.at_level(logging.WARNING, logger="lsllm.reports"):
        written = draw_run(tmp_path, missing_log, "accuracy", SEQUENCE, ([0], [0]), "dev: dev.jsonl")
    assert written == [tmp_path / "confusion_matrix.png"]  # the other picture is still drawn
    [warning] = [r.getMessage() for r in caplog.records]
    assert "could not draw" in warning and "learning_curves.png" in warning and "FileNotFoundError" in warning
