"""Exported folders load with plain transformers (Auto classes and pipelines) and predict like the run."""

import json
import subprocess
import sys

import pytest
import torch

import lsllm
from lsllm.export import export_merged
from tests.helpers import TAGS, saved_run

TEXTS = ["the film was good", "John Smith visited Paris and Berlin last week"]

# Runs in a fresh interpreter: only `import lsllm` and public transformers APIs, no trust_remote_code.
PLAIN_TRANSFORMERS = """
import json, sys
import lsllm
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer
from transformers import pipeline
folder, task, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
auto = AutoModelForSequenceClassification if task == "sequence" else AutoModelForTokenClassification
model, tokenizer = auto.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
logits = [model(**tokenizer(text, return_tensors="pt")).logits[0].tolist() for text in texts]
kind = "text-classification" if task == "sequence" else "token-classification"
answers = pipeline(kind, model=folder)(texts)
print(json.dumps({"logits": logits, "pipeline": answers}, default=float))
"""


@pytest.mark.parametrize(
    "task, attention, pooling",
    [
        ("sequence", "causal", "last"),
        ("sequence", "bidirectional", "mean"),
        ("token", "causal", "last"),
        ("token", "bidirectional", "last"),
    ],
)
def test_merged_export_predicts_like_the_run_in_plain_transformers(
    tiny_model, tmp_path, task, attention, pooling
):
    run = saved_run(tiny_model, tmp_path / "run", task, attention, pooling)
    folder = export_merged(run, tmp_path / "export")
    classifier = lsllm.load(run)
    encoded = [classifier.tokenizer(text)["input_ids"] for text in TEXTS]
    expected = [row.tolist() for row in classifier.logits([{"input_ids": ids} for ids in encoded])]
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_TRANSFORMERS, str(folder), task, json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    flat = [
        torch.cat([torch.tensor(rows).flatten() for rows in side]).tolist()
        for side in (expected, got["logits"])
    ]
    assert flat[1] == pytest.approx(flat[0], abs=1e-5)
    if task == "sequence":
        predictions = classifier.predict(TEXTS)
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


def test_export_folder_is_self_contained_with_a_model_card(tiny_model, tmp_path):
    run = saved_run(tiny_model, tmp_path / "run", "sequence", "bidirectional", "mean")
    folder = export_merged(run, tmp_path / "export")
    names = {path.name for path in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "labels.json"} <= names
    assert not any(name.startswith("adapter") for name in names)
    card = (folder / "README.md").read_text()
    assert "Attention: bidirectional; pooling: mean" in card and "neg, pos, neutral" in card


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
        "from lsllm.hf_model import LsllmConfig;"
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
