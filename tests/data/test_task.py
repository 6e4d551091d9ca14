"""A run's label set and shape come from its options and its training labels."""

import pytest

from lsllm.config import TrainConfig
from lsllm.data.examples import SequenceExample
from lsllm.data.task import label_map_for
from lsllm.errors import LsllmError


def examples(*labels) -> list[SequenceExample]:
    return [SequenceExample(f"text {i}", label=label) for i, label in enumerate(labels)]


def test_one_list_among_the_training_labels_makes_the_run_multi_label():
    single = label_map_for(TrainConfig(task="sequence"), examples("b", "a"))
    assert (single.names, single.shape) == (["a", "b"], "single")
    multi = label_map_for(TrainConfig(task="sequence"), examples("b", ["c", "a"], []))
    assert (multi.names, multi.shape) == (["a", "b", "c"], "multi")
    assert multi.target("b") == [0.0, 1.0, 0.0]


def test_multi_label_can_be_forced_and_named():
    forced = label_map_for(TrainConfig(task="sequence", multi_label=True), examples("b", "a"))
    assert (forced.names, forced.shape) == (["a", "b"], "multi")
    named = label_map_for(TrainConfig(task="sequence", labels=["z", "a"]), examples(["a"], ["z"]))
    assert (named.names, named.shape) == (["z", "a"], "multi")
    columns = label_map_for(TrainConfig(task="sequence", label_columns=["toxic", "insult"]), examples([]))
    assert (columns.names, columns.shape) == (["toxic", "insult"], "multi")


def test_regression_has_one_output_named_after_its_column():
    labels = label_map_for(TrainConfig(task="regression", label_field="score"), examples(1.5, -2.0))
    assert (labels.names, labels.shape) == (["score"], "regression")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"task": "token", "multi_label": True},
            r"--multi-label, .* are for --task sequence, not --task token",
        ),
        ({"task": "regression", "label_columns": ["a"]}, r"are for --task sequence, not --task regression"),
        (
            {"task": "regression", "class_weights": "auto"},
            r"--class-weights.* are for classes; .*--task regression",
        ),
        ({"task": "regression", "template": "auto"}, r"--template auto \(--preset prompt\) are for classes"),
        ({"task": "regression", "labels": ["a"]}, r"leave them out for --task regression"),
        ({"task": "sequence", "labels": ["a"], "label_columns": ["a"]}, r"give only --label-columns"),
        ({"task": "sequence", "class_weights": "most"}, r"--class-weights must be one of none, auto"),
    ],
)
def test_options_that_do_not_fit_the_task_are_refused(options, message):
    config = TrainConfig(model="m", train="t", dev="d", output="o", **options)
    with pytest.raises(LsllmError, match=message):
        config.validate()
