"""Metrics against small hand-worked examples, so any change in scoring semantics shows up here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lsllm.decision import Decision
from lsllm.metrics import (
    LOWER_IS_BETTER,
    OFFSET_GRID,
    format_metrics,
    multilabel_metrics,
    regression_metrics,
    selection_metric,
    sequence_metrics,
    token_metrics,
    tune_offsets,
    tune_thresholds,
)

# Three classes; by hand the confusion matrix is [[2, 1, 0], [0, 1, 1], [0, 0, 1]], 4 of 6 correct.
NAMES = ["neg", "neu", "pos"]
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]

# Gold: PER, LOC | ORG, PER.  Predicted: PER (right), ORG where LOC is (wrong type) | ORG cut one
# token short (boundary error), PER (right).  So 2 of 4 predicted and 2 of 4 gold entities match.
TRUE_TAGS = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "I-ORG", "O", "B-PER"]]
PRED_TAGS = [["B-PER", "I-PER", "O", "B-ORG", "O"], ["B-ORG", "O", "O", "B-PER"]]


def rows(text: str) -> list[list[str]]:
    """Each output line split into whitespace-separated cells, so tests ignore column padding."""
    return [line.split() for line in text.splitlines()]


def test_sequence_metrics_match_hand_computation() -> None:
    metrics = sequence_metrics(Y_TRUE, Y_PRED, NAMES)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # F1 per class: neg 2*1*(2/3)/(1+2/3) = 0.8, neu 0.5, pos 2*0.5*1/1.5 = 2/3.
    assert metrics["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert metrics["per_class"]["neg"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    )
    assert metrics["per_class"]["neu"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    assert metrics["per_class"]["pos"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1}
    )
    assert metrics["confusion_matrix"] == {"labels": NAMES, "matrix": [[2, 1, 0], [0, 1, 1], [0, 0, 1]]}


def test_sequence_metrics_keep_absent_classes_and_stringify_int_names() -> None:
    metrics = sequence_metrics([0, 1], [0, 0], [0, 1, 2])
    assert list(metrics["per_class"]) == ["0", "1", "2"]
    assert metrics["per_class"]["2"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert metrics["accuracy"] == 0.5
    # Class 0 has P = 1/2, R = 1, F1 = 2/3; classes 1 and 2 score 0 but still count in the mean.
    assert metrics["macro_f1"] == pytest.approx(2 / 9)
    assert metrics["confusion_matrix"]["matrix"] == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]


def test_sequence_metrics_reject_indices_outside_the_label_set() -> None:
    with pytest.raises(ValueError, match=r"\[3\]"):
        sequence_metrics([0, 1], [0, 3], NAMES)


def test_token_metrics_count_wrong_type_and_boundary_errors_as_misses() -> None:
    metrics = token_metrics(TRUE_TAGS, PRED_TAGS)
    assert metrics["precision"] == 0.5
    assert metrics["recall"] == 0.5
    assert metrics["f1"] == 0.5
    # 9 tokens, two differ (B-LOC vs B-ORG, I-ORG vs O).
    assert metrics["accuracy"] == pytest.approx(7 / 9)
    assert metrics["per_type"] == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2},
    }


def test_token_metrics_strict_mode_ignores_entities_without_a_begin_tag() -> None:
    metrics = token_metrics([["B-PER", "I-PER"]], [["I-PER", "I-PER"]])
    assert (metrics["precision"], metrics["recall"], metrics["f1"]) == (0.0, 0.0, 0.0)
    assert metrics["accuracy"] == 0.5


def test_token_metrics_survive_missing_entities() -> None:
    none_at_all = token_metrics([["O", "O"]], [["O", "O"]])
    assert none_at_all == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 1.0, "per_type": {}}
    spurious = token_metrics([["O", "O"]], [("B-PER", "O")])
    assert spurious["per_type"] == {"PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}}
    assert spurious["accuracy"] == 0.5


def test_metrics_are_plain_json_values() -> None:
    for metrics in (sequence_metrics(Y_TRUE, Y_PRED, NAMES), token_metrics(TRUE_TAGS, PRED_TAGS)):
        assert json.loads(json.dumps(metrics)) == metrics


def test_format_sequence_metrics() -> None:
    text = format_metrics(sequence_metrics(Y_TRUE, Y_PRED, NAMES))
    lines = rows(text)
    assert lines[:2] == [["accuracy", "66.7"], ["macro-F1", "65.6"]]
    assert ["class", "precision", "recall", "f1", "support"] in lines
    assert ["neg", "100.0", "66.7", "80.0", "3"] in lines
    assert ["pos", "50.0", "100.0", "66.7", "1"] in lines
    assert ["true", "\\", "pred", "neg", "neu", "pos"] in lines
    assert ["neg", "2", "1", "0"] in lines
    assert ["neu", "0", "1", "1"] in lines
    table = text.splitlines()[3:7]
    assert len({len(line) for line in table}) == 1, "per-class columns must line up"


def test_format_token_metrics() -> None:
    lines = rows(format_metrics(token_metrics(TRUE_TAGS, PRED_TAGS)))
    assert lines[:4] == [
        ["entity", "precision", "50.0"],
        ["entity", "recall", "50.0"],
        ["entity", "F1", "50.0"],
        ["token", "accuracy", "77.8"],
    ]
    assert ["type", "precision", "recall", "f1", "support"] in lines
    assert ["PER", "100.0", "100.0", "100.0", "2"] in lines
    assert ["LOC", "0.0", "0.0", "0.0", "1"] in lines
    assert "no entities" in format_metrics(token_metrics([["O"]], [["O"]]))


def test_format_splits_under_headings() -> None:
    text = format_metrics(
        {"dev": sequence_metrics(Y_TRUE, Y_PRED, NAMES), "test": token_metrics(TRUE_TAGS, PRED_TAGS)}
    )
    lines = text.splitlines()
    assert lines[0] == "== dev =="
    assert lines.index("== test ==") > lines.index("accuracy  66.7")
    assert "entity F1         50.0" in lines


@pytest.mark.parametrize(
    ("task", "shape", "key"),
    [
        ("sequence", "single", "accuracy"),
        ("token", "single", "f1"),
        ("sequence", "multi", "micro_f1"),
        ("regression", "regression", "mse"),
    ],
)
def test_selection_metric(task: str, shape: str, key: str) -> None:
    assert selection_metric(task, shape) == key
    assert (key in LOWER_IS_BETTER) == (shape == "regression")


def test_selection_metric_is_the_one_asked_for() -> None:
    assert selection_metric("sequence", "single", "macro_f1") == "macro_f1"


# Three labels a, b, c. By label: a all right; b one of two found; c missed, and predicted once wrongly.
# Micro: tp 3, fp 1, fn 2 -> P 3/4, R 3/5, F1 6/9. Only the last text has all its labels right.
MULTI_GOLD = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]]
MULTI_PRED = [[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0]]


def test_multilabel_metrics_match_hand_computation() -> None:
    metrics = multilabel_metrics(MULTI_GOLD, MULTI_PRED, ["a", "b", "c"], thresholds=[0.5, 0.3, 0.7])
    assert metrics["micro_precision"] == pytest.approx(3 / 4)
    assert metrics["micro_recall"] == pytest.approx(3 / 5)
    assert metrics["micro_f1"] == pytest.approx(2 / 3)
    assert metrics["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert metrics["exact_match"] == 0.25
    assert metrics["per_label"]["b"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2, "threshold": 0.3}
    )
    assert metrics["per_label"]["c"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 1,
        "threshold": 0.7,
    }
    assert json.loads(json.dumps(metrics)) == metrics


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


# Label a is right for thresholds in (0.62, 0.72], label b in (0.12, 0.33]; one shared threshold does best
# in b's range (micro-F1 6/7 there, against 4/5 in a's).
TUNING_GOLD = [[1, 1], [1, 0], [0, 0]]
TUNING_LOGITS = [[logit(0.72), logit(0.33)], [logit(0.81), logit(0.12)], [logit(0.62), logit(0.12)]]


def test_thresholds_are_tuned_for_micro_f1_or_each_labels_f1_nearest_one_half_on_ties() -> None:
    shared = tune_thresholds(TUNING_GOLD, TUNING_LOGITS, per_label=False)
    per_label = tune_thresholds(TUNING_GOLD, TUNING_LOGITS, per_label=True)
    assert shared == (0.3, 0.3) and per_label == (0.65, 0.3)
    decided = Decision("multi", per_label).decide(TUNING_LOGITS)
    assert decided.int().tolist() == TUNING_GOLD
    shared_f1 = multilabel_metrics(TUNING_GOLD, Decision("multi", shared).decide(TUNING_LOGITS), "ab")
    assert shared_f1["micro_f1"] == pytest.approx(6 / 7)


# Label 2 is rare: its logit trails label 0's by 1 on its own texts and the leading label's by 3 on the
# others, so argmax never picks it (macro-F1 (0.8 + 1 + 0) / 3), while shifting it against label 0 by
# more than 1 and less than 3 gets every text right.
RARE_GOLD = [0, 0, 0, 0, 1, 2, 2]
RARE_LOGITS = [[3, 0, 0], [3, 0, 0], [3, 0, 0], [3, 0, 0], [0, 3, 0], [2, 0, 1], [2, 0, 1]]


def test_offsets_win_back_a_rare_label_with_the_smallest_offset_that_does() -> None:
    offsets = tune_offsets(RARE_GOLD, RARE_LOGITS)
    assert sorted(map(abs, offsets)) == [0.0, 0.0, 1.25]  # label 0 down or label 2 up: the same rule
    assert Decision("single").decide(RARE_LOGITS).tolist() == [0, 0, 0, 0, 1, 0, 0]
    assert Decision("single", offsets=offsets).decide(RARE_LOGITS).tolist() == RARE_GOLD


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 5).flatmap(
        lambda k: st.lists(
            st.tuples(st.integers(0, k - 1), st.lists(st.floats(-4, 4), min_size=k, max_size=k)),
            min_size=1,
            max_size=30,
        )
    )
)
def test_tuned_offsets_never_score_below_argmax_on_the_data_they_were_tuned_on(rows) -> None:
    gold, logits = [g for g, _ in rows], np.array([row for _, row in rows])
    names = [str(i) for i in range(logits.shape[1])]

    def macro_f1(decision: Decision) -> float:
        return sequence_metrics(gold, decision.decide(logits).tolist(), names)["macro_f1"]

    offsets = tune_offsets(gold, logits)
    assert set(offsets) <= set(OFFSET_GRID)
    assert macro_f1(Decision("single", offsets=offsets)) >= macro_f1(Decision("single"))


def test_offsets_shift_the_probabilities_so_the_chosen_label_is_the_likeliest() -> None:
    logits = torch.tensor([[2.0, 0.0, 1.0]])
    decision = Decision("single", offsets=(0.0, 0.0, 1.5))
    assert torch.allclose(decision.scores(logits), torch.tensor([[2.0, 0.0, 2.5]]).softmax(-1))
    assert decision.decide(logits).tolist() == [2] and Decision("single").decide(logits).tolist() == [0]


def test_regression_metrics_equal_scipys() -> None:
    gold = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    predicted = [1.5, 1.9, 3.6, 3.2, 5.5, 5.9]
    metrics = regression_metrics(gold, predicted)
    assert metrics["mse"] == pytest.approx((0.25 + 0.01 + 0.36 + 0.64 + 0.25 + 0.01) / 6)
    assert metrics["pearson"] == pytest.approx(scipy.stats.pearsonr(gold, predicted).statistic)
    assert metrics["spearman"] == pytest.approx(scipy.stats.spearmanr(gold, predicted).statistic)
    assert metrics["spearman"] == pytest.approx(1 - 6 * 2 / (6 * 35))  # ranks 3 and 4 swapped
    assert metrics["count"] == 6
    perfect = regression_metrics(gold, [2 * g + 1 for g in gold])  # correlations ignore scale; MSE does not
    assert (perfect["pearson"], perfect["spearman"]) == pytest.approx((1.0, 1.0))
    assert perfect["mse"] == pytest.approx(np.mean([(g + 1) ** 2 for g in gold]))


def test_undefined_correlations_are_none() -> None:
    constant = regression_metrics([1.0, 2.0, 3.0], [0.5, 0.5, 0.5])
    assert constant["pearson"] is None and constant["spearman"] is None and constant["mse"] > 0
    assert regression_metrics([1.0], [2.0]) == {"mse": 1.0, "pearson": None, "spearman": None, "count": 1}
    assert json.loads(json.dumps(constant)) == constant


def test_format_multilabel_and_regression_metrics() -> None:
    lines = rows(format_metrics(multilabel_metrics(MULTI_GOLD, MULTI_PRED, ["a", "b", "c"], [0.5, 0.3, 0.7])))
    assert lines[:2] == [["micro-F1", "66.7"], ["macro-F1", "55.6"]]
    assert ["exact", "match", "25.0"] in lines
    assert ["label", "precision", "recall", "f1", "support", "threshold"] in lines
    assert ["b", "100.0", "50.0", "66.7", "2", "0.30"] in lines
    regression = rows(
        format_metrics({"dev": regression_metrics([1.0, 2.0, 3.0], [0.5, 0.5, 0.5])})
    )  # MSE (0.25 + 2.25 + 6.25) / 3
    assert regression == [["==", "dev", "=="], ["mse", "2.9167"], ["pearson", "n/a"], ["spearman", "n/a"]]
