"""`--format transformers`: runs that transformers' own classes can express load with no lsllm installed
and give the run's logits, padded on either side; runs they cannot express are refused in one line."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

import lsllm
from lsllm.data.examples import SequenceExample
from lsllm.export import export_run
from tests.helpers import SEQUENCE_LABELS, TAGS, THRESHOLDS, saved_run
from tests.serving.client import assert_same

TEXTS = ["the film was good", "John Smith visited Paris and Berlin last week", "a"]
TEMPLATE = "Review: {text}\nSentiment:"
# name: (architecture, task, attention, other run options, the stock class expected)
CASES = {
    "sequence-causal": ("llama", "sequence", "causal", {}, "LlamaForSequenceClassification"),
    "sequence-bidirectional": (
        "mistral",
        "sequence",
        "bidirectional",
        {},
        "MistralForSequenceClassification",
    ),
    "token-bidirectional": ("qwen2", "token", "bidirectional", {}, "Qwen2ForTokenClassification"),
    "token-causal-no-bias": ("llama", "token", "causal", {"head_bias": False}, "LlamaForTokenClassification"),
    "sequence-template": (
        "llama",
        "sequence",
        "causal",
        {"template": TEMPLATE},
        "LlamaForSequenceClassification",
    ),
    "multi-label": ("llama", "sequence", "causal", {"shape": "multi"}, "LlamaForSequenceClassification"),
    "regression": ("qwen2", "regression", "bidirectional", {}, "Qwen2ForSequenceClassification"),
}

# Runs in a fresh interpreter where lsllm cannot be imported: plain transformers only.
WITHOUT_LSLLM = """
import json, sys
sys.modules["lsllm"] = None  # `import lsllm` now fails, whatever sys.path holds
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification
from transformers import AutoTokenizer, pipeline
jobs, texts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
results = {}
for folder, task, template in jobs:
    inputs = [template.format(text=text) for text in texts] if template else texts
    auto = AutoModelForTokenClassification if task == "token" else AutoModelForSequenceClassification
    model, tokenizer = auto.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    padded = {}
    for side in ("left", "right"):
        tokenizer.padding_side = side
        batch = tokenizer(inputs, padding=True, return_tensors="pt")
        logits = model(**batch).logits
        if task == "token":  # the real tokens' rows, in order
            logits = [row[mask.bool()] for row, mask in zip(logits, batch["attention_mask"])]
        padded[side] = [row.tolist() for row in logits]
    kind = "token-classification" if task == "token" else "text-classification"
    config = AutoConfig.from_pretrained(folder)
    results[folder] = {
        "padded": padded,
        "pipeline": pipeline(kind, model=folder)(inputs),
        "architectures": config.architectures,
        "is_causal": config.is_causal,
    }
loaded = sorted(name for name, module in sys.modules.items() if name.split(".")[0] == "lsllm" and module)
print(json.dumps({"results": results, "lsllm_modules": loaded}, default=float))
"""


@pytest.fixture(scope="module")
def exported(tiny_models, tmp_path_factory) -> dict:
    """Per case: the run, its transformers export, the run's own logits per text and its predictions."""
    root = tmp_path_factory.mktemp("stock")
    made = {}
    for name, (arch, task, attention, options, _) in CASES.items():
        run = saved_run(tiny_models[arch], root / name, task, attention, **options)
        classifier = lsllm.load(run, device="cpu", precision="fp32")
        if task != "token":
            examples = [SequenceExample(text) for text in TEXTS]
            features = classifier.data.encode(examples, "texts", with_labels=False)
        else:
            features = [{"input_ids": classifier.tokenizer(text)["input_ids"]} for text in TEXTS]
        made[name] = {
            "run": run,
            "export": export_run(run, root / f"{name}-export", format="transformers"),
            "logits": [row.tolist() for row in classifier.logits(features)],
            "predictions": classifier.predict(TEXTS),
        }
    return made


@pytest.fixture(scope="module")
def without_lsllm(exported) -> dict:
    """What plain transformers computes for every export, in one interpreter that cannot import lsllm."""
    jobs = [
        [str(made["export"].path), CASES[name][1], CASES[name][3].get("template")]
        for name, made in exported.items()
    ]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-I", "-c", WITHOUT_LSLLM, json.dumps(jobs), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        env=env,
        cwd=exported[next(iter(CASES))]["export"].path,
        check=True,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["lsllm_modules"] == []
    return found["results"]


cases = pytest.mark.parametrize("name", list(CASES))


@cases
def test_export_gives_the_runs_logits_in_plain_transformers_padded_either_side(exported, without_lsllm, name):
    _, _, attention, _, stock_class = CASES[name]
    got = without_lsllm[str(exported[name]["export"].path)]
    assert got["architectures"] == [stock_class]
    assert got["is_causal"] == (attention == "causal")
    for side in ("left", "right"):
        for ours, theirs in zip(exported[name]["logits"], got["padded"][side], strict=True):
            assert torch.tensor(theirs).shape == torch.tensor(ours).shape
            assert torch.tensor(theirs).flatten().tolist() == pytest.approx(
                torch.tensor(ours).flatten().tolist(), abs=1e-5
            ), side


@cases
def test_the_pipeline_names_the_runs_labels(exported, without_lsllm, name):
    answers = without_lsllm[str(exported[name]["export"].path)]["pipeline"]
    expected = exported[name]
    if name == "regression":  # the pipeline reads problem_type: the number (the logit) as it is, in fp32
        values = [p["value"] for p in expected["predictions"]]
        assert [a["score"] for a in answers] == pytest.approx(values, abs=1e-5)
    elif name == "multi-label":  # sigmoid probabilities, the likeliest label
        best = [max(p["probs"].items(), key=lambda item: item[1]) for p in expected["predictions"]]
        assert [(a["label"], a["score"]) for a in answers] == [
            (label, pytest.approx(score, abs=1e-5)) for label, score in best
        ]
    elif CASES[name][1] == "sequence":
        assert [a["label"] for a in answers] == [p["label"] for p in expected["predictions"]]
        scores = [p["score"] for p in expected["predictions"]]
        assert [a["score"] for a in answers] == pytest.approx(scores, abs=1e-5)
    else:  # every sub-token not tagged O, with the tag the run's logits give it
        for logits, row in zip(expected["logits"], answers, strict=True):
            tags = [TAGS[scores.index(max(scores))] for scores in logits]
            assert [(a["index"], a["entity"]) for a in row] == [
                (i, t) for i, t in enumerate(tags) if t != "O"
            ]


def test_a_templated_run_is_exported_with_its_prompt_in_the_card_and_a_note(exported):
    export = exported["sequence-template"]["export"]
    assert len(export.notes) == 1 and "--template" in export.notes[0] and "model card" in export.notes[0]
    card = (export.path / "README.md").read_text()
    assert f"TEMPLATE = {TEMPLATE!r}" in card and "Export format: transformers" in card
    assert exported["sequence-causal"]["export"].notes == []


def test_the_config_carries_labels_padding_and_the_problem_type(exported):
    config = json.loads((exported["sequence-causal"]["export"].path / "config.json").read_text())
    tokenizer = lsllm.load(exported["sequence-causal"]["run"], device="cpu").tokenizer
    assert config["id2label"] == {str(i): name for i, name in enumerate(SEQUENCE_LABELS)}
    assert config["pad_token_id"] == tokenizer.pad_token_id
    assert config["problem_type"] == "single_label_classification"
    saved = yaml.safe_load((exported["sequence-causal"]["export"].path / "config.yaml").read_text())
    assert saved["head_bias"] is False
    multi = exported["multi-label"]["export"].path
    assert json.loads((multi / "config.json").read_text())["problem_type"] == "multi_label_classification"
    assert lsllm.load(multi, device="cpu").decision.thresholds == THRESHOLDS  # thresholds.json came along
    regression = json.loads((exported["regression"]["export"].path / "config.json").read_text())
    assert (regression["problem_type"], regression["id2label"]) == ("regression", {"0": "score"})


@cases
def test_lsllm_loads_a_transformers_export_and_predicts_like_the_run(exported, name):
    classifier = lsllm.load(exported[name]["export"].path, device="cpu", precision="fp32")
    got, expected = classifier.predict(TEXTS), exported[name]["predictions"]
    if CASES[name][1] == "token":
        assert [p["tags"] for p in got] == [p["tags"] for p in expected]
    else:
        assert_same(got, expected)


@pytest.mark.parametrize(
    "task, attention, options, words",
    [
        ("sequence", "causal", {"pooling": "mean"}, ["--pooling mean", "last token only", "--format lsllm"]),
        ("sequence", "causal", {"pooling": "max"}, ["--pooling max", "--format lsllm"]),
        ("sequence", "causal", {"head_bias": True}, ["has a bias", "--format lsllm", "--no-head-bias"]),
        (
            "token",
            "bidirectional",
            {"bidirectional_layers": "-1:"},
            ["--bidirectional-layers", "--format lsllm"],
        ),
    ],
    ids=["mean", "max", "sequence-head-bias", "layer-wise"],
)
def test_a_run_the_stock_classes_cannot_express_is_refused_naming_the_format_that_can(
    tiny_model, tmp_path, task, attention, options, words
):
    run = saved_run(tiny_model, tmp_path / "run", task, attention, **options)
    with pytest.raises(lsllm.LsllmError) as error:
        export_run(run, tmp_path / "export", format="transformers")
    message = str(error.value)
    assert "\n" not in message and all(word in message for word in words), message
    assert not (tmp_path / "export").exists()
    assert export_run(run, tmp_path / "export").format == "lsllm"  # the format that carries it does


def test_an_architecture_that_ignores_is_causal_is_refused_not_exported_wrong(
    tiny_model, tmp_path, monkeypatch
):
    import lsllm.export.stock as stock_format

    to_stock = stock_format.to_stock

    def ignoring_is_causal(*args):  # as a decoder whose attention code is always causal would behave
        model = to_stock(*args)
        model.config.is_causal = True
        return model

    monkeypatch.setattr(stock_format, "to_stock", ignoring_is_causal)
    run = saved_run(tiny_model, tmp_path / "run", "token", "bidirectional")
    with pytest.raises(lsllm.LsllmError, match=r"does not compute this run's logits.*--format lsllm"):
        export_run(run, tmp_path / "export", format="transformers")
    assert not (tmp_path / "export").exists()
