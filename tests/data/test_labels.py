import json

import pytest

from lsllm.data.labels import LabelMap
from lsllm.errors import LsllmError


def test_int_labels_in_numeric_order():
    labels = LabelMap.from_labels([10, 2, 1, 2, 0])
    assert labels.names == [0, 1, 2, 10]
    assert labels.index(10) == 3


def test_integer_strings_from_csv_sort_numerically_and_keep_type():
    labels = LabelMap.from_labels(["2", "10", "1"])
    assert labels.names == ["1", "2", "10"]


def test_string_labels_sorted():
    assert LabelMap.from_labels(["positive", "negative", "neutral", "negative"]).names == [
        "negative",
        "neutral",
        "positive",
    ]


def test_order_does_not_depend_on_input_order():
    values = ["b", "a", "c", "a"]
    assert LabelMap.from_labels(values) == LabelMap.from_labels(reversed(values))


def test_bio_tags_o_first_then_type_then_b_before_i():
    labels = LabelMap.from_labels(["I-PER", "O", "B-LOC", "B-PER", "I-LOC", "B-MISC"])
    assert labels.names == ["O", "B-LOC", "I-LOC", "B-MISC", "B-PER", "I-PER"]


def test_non_bio_strings_with_o_sort_plainly():
    assert LabelMap.from_labels(["O", "PER", "B-LOC"]).names == ["B-LOC", "O", "PER"]


def test_for_tags_completes_the_bio_set():
    labels = LabelMap.for_tags([["B-PER", "I-PER", "O"], ["B-creative-work"], ["I-LOC"]])
    assert labels.names == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER", "B-creative-work", "I-creative-work"]


def test_for_tags_always_has_o():
    assert LabelMap.for_tags([["B-X"]]).names == ["O", "B-X", "I-X"]


def test_from_names_keeps_user_order():
    labels = LabelMap.from_names(["positive", "negative", "neutral"])
    assert [labels.index(name) for name in ("positive", "negative", "neutral")] == [0, 1, 2]
    assert labels.name(2) == "neutral"
    assert len(labels) == 3


def test_index_matches_int_and_string_forms():
    assert LabelMap.from_labels([0, 1]).index("1") == 1
    assert LabelMap.from_names(["0", "1"]).index(1) == 1


def test_mixed_int_and_string_duplicates_are_one_label():
    assert LabelMap.from_labels([1, "1", 0]).names == [0, 1]


@pytest.mark.parametrize(
    "labels",
    [
        LabelMap.from_labels([3, 1]),
        LabelMap.for_label_lists([["b"], [], ["a", "b"]]),
        LabelMap.for_regression("y"),
    ],
    ids=["single", "multi", "regression"],
)
def test_dict_round_trip_through_json(labels):
    restored = LabelMap.from_dict(json.loads(json.dumps(labels.to_dict())))
    assert restored == labels and restored.shape == labels.shape


def test_labels_json_written_before_label_shapes_is_single_label():
    old = LabelMap.from_dict({"names": [1, 3]})
    assert old == LabelMap.from_labels([3, 1]) and old.shape == "single" and old.index(3) == 1


def test_each_shape_gives_the_head_its_own_target():
    assert LabelMap.from_labels(["neg", "pos"]).target("pos") == 1
    multi = LabelMap.for_label_lists([["sports", "politics"], ["arts"]])
    assert multi.names == ["arts", "politics", "sports"]
    assert multi.target(["sports", "arts"]) == [1.0, 0.0, 1.0]
    assert multi.target("politics") == [0.0, 1.0, 0.0]  # a lone label is a list of one
    assert multi.target([]) == [0.0, 0.0, 0.0]
    assert LabelMap.for_regression("score").target(2) == 2.0


def test_a_list_in_a_single_label_run_and_an_unknown_label_in_a_list_name_the_fix():
    with pytest.raises(LsllmError, match=r"^label \['a', 'b'\] in dev.jsonl is a list, .*--multi-label"):
        LabelMap.from_labels(["a", "b"]).target(["a", "b"], "dev.jsonl")
    with pytest.raises(
        LsllmError, match=r"^label 'c' in dev.jsonl is not among the training labels \(a, b\)"
    ):
        LabelMap.for_label_lists([["a", "b"]]).target(["a", "c"], "dev.jsonl")


def test_balancing_weights_are_inverse_class_frequency():
    labels = LabelMap.from_names(["a", "b", "c", "unseen"])
    # 6 labels, 3 classes seen: a 3 times, b twice, c once -> 6 / (3 * n_c); an unseen class weighs 1.
    assert labels.balancing_weights([0, 0, 0, 1, 1, 2]) == pytest.approx([2 / 3, 1.0, 2.0, 1.0])
    tags = LabelMap.from_names(["O", "B-X", "I-X"])  # token runs: every word's tag counts
    assert tags.balancing_weights([[0, 0, 1], [0, 1, 2]]) == pytest.approx([6 / 9, 1.0, 2.0])


def test_multi_label_weights_are_negatives_over_positives():
    labels = LabelMap.from_names(["a", "b", "never", "always"], "multi")
    targets = [[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0]]
    assert labels.balancing_weights(targets) == pytest.approx([3.0, 1.0, 1.0, 1.0])


def test_unknown_label_names_file_labels_and_fix():
    labels = LabelMap.from_labels(["positive", "negative"])
    with pytest.raises(LsllmError) as caught:
        labels.index("neutral", source="data/dev.csv")
    assert str(caught.value) == (
        "label 'neutral' in data/dev.csv is not among the training labels (negative, positive); "
        "fix the data or list all labels with --labels"
    )


def test_unknown_label_without_source_and_long_list_is_shortened():
    labels = LabelMap.from_labels(range(30))
    with pytest.raises(LsllmError, match=r"^label 99 is not among .*\(0, 1, .*, 19, \.\.\. 30 in all\); fix"):
        labels.index(99)


def test_duplicate_names_are_rejected():
    with pytest.raises(LsllmError, match=r"label 'a' is listed twice; give each label once with --labels"):
        LabelMap.from_names(["a", "b", "a"])


def test_int_and_string_with_same_text_are_duplicates():
    with pytest.raises(LsllmError, match=r"label '1' is listed twice"):
        LabelMap.from_names([1, "1"])


def test_empty_label_set_is_rejected():
    with pytest.raises(LsllmError, match=r"the label set is empty; .*--labels"):
        LabelMap.from_labels([])
