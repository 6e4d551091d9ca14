"""Exports, merged or not, load with plain transformers (Auto classes, pipelines) and with lsllm.load,
and predict like the run they came from."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import lsllm
from lsllm.export import export_run
from tests.helpers import TAGS, THRESHOLDS, saved_run
from tests.serving.client import assert_same

TEXTS = ["the film was good", "John Smith visited Paris and Berlin last week"]
MULTI_LABEL = ("sequence", "causal", "last", None, "multi")  # saved_run's arguments; None: no layer-wise
REGRESSION = ("regression", "bidirectional", "mean")
CASES = [
    ("sequence", "causal", "last"),
    ("sequence", "bidirectional", "mean"),
    ("token", "causal", "last"),
    ("token", "bidirectional", "last"),
    ("token", "bidirectional", "last", "-1:"),  # layer-wise: only the last layer unmasked
    MULTI_LABEL,
    REGRESSION,
]
MERGE = {"unmerged": False, "merged": True}

# Runs in a fresh interpreter: only `import lsllm` and public transformers APIs, no trust_remote_code.
PLAIN_TRANSFORMERS = """
import json, sys
import lsllm
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer
from transformers import pipeline
jobs, texts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
results = []
for folder, task in jobs:
    auto = AutoModelForTokenClassification if task == "token" else AutoModelForSequenceClassification
    model, tokenizer = auto.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    logits = [model(**tokenizer(text, return_tensors="pt")).logits[0].tolist() for text in texts]
    kind = "token-classification" if task == "token" else "text-classification"
    results.append({"logits": logits, "pipeline": pipeline(kind, model=folder)(texts)})
print(json.dumps(results, default=float))
"""


@pytest.fixture(scope="module")
def exports(tiny_model, tmp_path_factory) -> dict:
    """Per case: a run (non-zero LoRA), its unmerged and merged exports, and what the run predicts."""
    root = tmp_path_factory.mktemp("exports")
    made = {}
    for case in CASES:
        name = "-".join(filter(None, case))
        run = saved_run(tiny_model, root / name, *case)
        classifier = lsllm.load(run, device="cpu", precision="fp32")
        features = [{"input_ids": classifier.tokenizer(text)["input_ids"]} for text in TEXTS]
        made[case] = {
            "folders": {
                kind: export_run(run, root / f"{name}-{kind}", merge).path for kind, merge in MERGE.items()
            },
            "logits": [row.tolist() for row in classifier.logits(features)],
            "predictions": classifier.predict(TEXTS),
        }
    return made


@pytest.fixture(scope="module")
def plain_transformers(exports) -> dict:
    """What plain transformers computes for every export, all in one fresh interpreter (one start-up)."""
    jobs = [[str(folder), case[0]] for case, made in exports.items() for folder in made["folders"].values()]
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_TRANSFORMERS, json.dumps(jobs), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        check=True,
    )
    results = json.loads(out.stdout.strip().splitlines()[-1])
    return {folder: result for (folder, _), result in zip(jobs, results, strict=True)}


cases = pytest.mark.parametrize("case", CASES, ids=["-".join(filter(None, case)) for case in CASES])
kinds = pytest.mark.parametrize("kind", list(MERGE))


@cases
@kinds
def test_export_predicts_like_the_run_in_plain_transformers(exports, plain_transformers, case, kind):
    got = plain_transformers[str(exports[case]["folders"][kind])]
    expected, predictions = exports[case]["logits"], exports[case]["predictions"]
    flat = [
        torch.cat([torch.tensor(rows).flatten() for rows in side]).tolist()
        for side in (expected, got["logits"])
    ]
    assert flat[1] == pytest.approx(flat[0], abs=1e-5)
    if case[0] == "regression":  # the pipeline reads problem_type: the number as it is
        assert [a["score"] for a in got["pipeline"]] == pytest.approx(
            [p["value"] for p in predictions], abs=1e-5
        )
    elif case[-1] == "multi":  # the pipeline reads problem_type: sigmoid scores, the likeliest label
        best = [max(p["probs"].items(), key=lambda item: item[1]) for p in predictions]
        assert [(a["label"], a["score"]) for a in got["pipeline"]] == [
            (label, pytest.approx(score, abs=1e-5)) for label, score in best
        ]
    elif case[0] == "sequence":
        assert [a["label"] for a in got["pipeline"]] == [p["label"] for p in predictions]
        assert [a["score"] for a in got["pipeline"]] == pytest.approx(
            [p["score"] for p in predictions], abs=1e-5
        )
    else:  # the pipeline lists every token not tagged O, with the tag the run gives it
        for logits, answers in zip(expected, got["pipeline"], strict=True):
            tags = [TAGS[row.index(max(row))] for row in logits]
            assert [(a["index"], a["entity"]) for a in answers] == [
                (i, tag) for i, tag in enumerate(tags) if tag != "O"
            ]


@cases
@kinds
def test_lsllm_loads_an_export_and_predicts_like_the_run(exports, case, kind):
    expected = exports[case]["predictions"]
    classifier = lsllm.load(exports[case]["folders"][kind], device="cpu", precision="fp32")
    assert not any("lora" in name for name, _ in classifier.model.named_parameters())  # merged on load
    got = classifier.predict(TEXTS)
    if case[0] == "token":
        assert [(p["tags"], p["entities"]) for p in got] == [(p["tags"], p["entities"]) for p in expected]
    else:
        assert_same(got, expected)


def test_an_export_keeps_the_label_shape_and_the_tuned_thresholds(exports):
    multi = exports[MULTI_LABEL]["folders"]["merged"]
    assert json.loads((multi / "config.json").read_text())["problem_type"] == "multi_label_classification"
    assert list(json.loads((multi / "thresholds.json").read_text())["thresholds"].values()) == list(
        THRESHOLDS
    )
    assert lsllm.load(multi, device="cpu").decision.thresholds == THRESHOLDS
    assert "thresholds.json" in (multi / "README.md").read_text()
    regression = exports[REGRESSION]["folders"]["merged"]
    config = json.loads((regression / "config.json").read_text())
    assert (config["problem_type"], config["id2label"]) == ("regression", {"0": "score"})
    assert not (regression / "thresholds.json").exists()
    single = exports[CASES[0]]["folders"]["merged"]
    assert json.loads((single / "config.json").read_text())["problem_type"] == "single_label_classification"


@kinds
def test_export_folder_is_self_contained_with_a_model_card(exports, kind):
    folder = exports[("sequence", "bidirectional", "mean")]["folders"][kind]
    names = {path.name for path in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "labels.json"} <= names
    assert "config.yaml" in names and not any(name.startswith("adapter") for name in names)
    lora = [key for key in load_file(folder / "model.safetensors") if ".lora_A." in key or ".lora_B." in key]
    config = json.loads((folder / "config.json").read_text())
    card = (folder / "README.md").read_text()
    assert "Attention: bidirectional; pooling: mean" in card and "neg, pos, neutral" in card
    if kind == "merged":
        assert not lora and "lora" not in config
        assert "lora-merged" in card and "merged into the weights" in card
    else:
        assert len(lora) == 2 * 7 * 2  # A and B, 7 linear layers, 2 decoder layers
        assert config["lora"]["r"] == 4 and "q_proj" in config["lora"]["target_modules"]
        assert "lora-merged" not in card and "kept apart from the weights" in card


def break_weights(folder):
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")


def drop_a_lora_weight(folder):  # transformers alone would start it from random values
    weights = load_file(folder / "model.safetensors")
    del weights[next(key for key in weights if ".lora_B." in key)]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def drop_labels(folder):
    (folder / "labels.json").unlink()


def corrupt_config(folder):
    (folder / "config.json").write_text("{not json")


@pytest.mark.parametrize(
    "damage, words",
    [
        (break_weights, ["corrupt", "export the run again"]),
        (drop_a_lora_weight, ["do not match", "lora_B", "export the run again"]),
        (drop_labels, ["missing labels.json", "export the run again"]),
        (corrupt_config, ["config.json", "export the run again"]),
    ],
)
def test_a_damaged_export_names_the_problem_and_the_fix(exports, tmp_path, damage, words):
    broken = tmp_path / "broken"
    shutil.copytree(exports[CASES[0]]["folders"]["unmerged"], broken)
    damage(broken)
    with pytest.raises(lsllm.LsllmError) as error:
        lsllm.load(broken, device="cpu")
    assert all(word in str(error.value) for word in words), error.value


def test_a_folder_that_is_neither_a_run_nor_an_export_is_refused(tiny_model, tmp_path):
    for folder in (tiny_model, tmp_path):  # a plain Hugging Face model folder; an empty folder
        with pytest.raises(lsllm.LsllmError, match="neither an lsllm run folder nor an export"):
            lsllm.load(folder, device="cpu")


@pytest.mark.parametrize(
    "imports",
    [
        "import lsllm; from transformers import AutoModelForTokenClassification",
        "from transformers import AutoModelForTokenClassification; import lsllm",
        "import peft; import lsllm.training; from transformers import AutoModelForTokenClassification",
    ],
)
def test_transformers_knows_lsllm_models_whatever_the_import_order(imports):
    check = (
        "from lsllm.modeling.hf import LsllmConfig;"
        " print(AutoModelForTokenClassification._model_mapping[LsllmConfig])"
    )
    out = subprocess.run(
        [sys.executable, "-c", f"{imports}; {check}"], capture_output=True, text=True, check=True
    )
    assert "LsllmForTokenClassification" in out.stdout


def test_importing_lsllm_stays_light():
    """`lsllm --help` must not pay for torch: registering with transformers waits until it is loaded."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, lsllm; print(sorted({'torch', 'transformers'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
