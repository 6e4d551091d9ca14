"""Run folders saved by earlier lsllm versions still load as they were trained."""

import json

import pytest
import yaml

import lsllm
from lsllm.config import TrainConfig
from tests.helpers import saved_run

TEXTS = ["the film was good", "a dull plot"]


def test_a_run_saved_before_head_bias_existed_loads_its_heads_bias(tiny_model, tmp_path):
    run = saved_run(tiny_model, tmp_path / "run", "sequence", "causal", head_bias=True)
    expected = lsllm.load(run, device="cpu", precision="fp32").predict(TEXTS)
    config = run / "config.yaml"
    values = yaml.safe_load(config.read_text())
    del values["head_bias"]  # as every run before --head-bias was saved
    config.write_text(yaml.safe_dump(values, sort_keys=False, explicit_end=True))
    classifier = lsllm.load(run, device="cpu", precision="fp32")
    assert classifier.model.head.bias is not None and classifier.data.config.head_bias is True
    got = classifier.predict(TEXTS)
    assert [p["score"] for p in got] == pytest.approx([p["score"] for p in expected], abs=1e-6)


def test_a_run_saved_before_label_shapes_existed_loads_as_single_label(tiny_model, tmp_path):
    run = saved_run(tiny_model, tmp_path / "run", "sequence", "causal")
    expected = lsllm.load(run, device="cpu", precision="fp32").predict(TEXTS)
    config = run / "config.yaml"
    values = yaml.safe_load(config.read_text())
    for key in ("multi_label", "label_columns", "threshold_per_label", "class_weights"):
        del values[key]
    config.write_text(yaml.safe_dump(values, sort_keys=False, explicit_end=True))
    (run / "labels.json").write_text(
        json.dumps({"names": json.loads((run / "labels.json").read_text())["names"]})
    )
    classifier = lsllm.load(run, device="cpu", precision="fp32")
    assert classifier.data.labels.shape == "single" and classifier.data.config.class_weights == "none"
    assert classifier.predict(TEXTS) == expected


def test_the_head_has_a_bias_by_default_for_token_runs_only():
    assert TrainConfig(task="sequence").head_bias is False
    assert TrainConfig(task="token").head_bias is True
    assert TrainConfig(task="sequence", head_bias=True).head_bias is True
