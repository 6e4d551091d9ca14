"""`--format onnx` and `--runtime onnx`: the exported graph gives the run's logits through onnxruntime for
batches of any size, length and padding side, lsllm predicts, evaluates and serves with it, and it runs
with no torch and no lsllm at all."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import lsllm
from lsllm.data.collate import Collator
from lsllm.data.examples import SequenceExample
from lsllm.export import export_run
from lsllm.modeling.onnx_model import OnnxModel
from tests.helpers import saved_run
from tests.serving.client import assert_same, predict, running

pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")

LONG = " ".join(["the film was good and the acting was great"] * 12)  # longer than any traced input
TEXTS = ["the film was good", "a", "John Smith visited Paris and Berlin last week", LONG]
# name: (task, attention, pooling, layer-wise unmasking, label shape)
CASES = {
    "sequence-mean": ("sequence", "bidirectional", "mean", None, "single"),
    "sequence-last": ("sequence", "causal", "last", None, "single"),
    "token-layerwise": ("token", "bidirectional", "last", "-1:", "single"),
    "multi-label": ("sequence", "causal", "last", None, "multi"),
    "regression": ("regression", "causal", "last", None, "single"),
}

# Runs in a fresh interpreter where neither torch nor lsllm can be imported.
WITHOUT_TORCH = """
import json, sys
sys.modules["torch"] = None
sys.modules["lsllm"] = None
import numpy as np
import onnxruntime
from tokenizers import Tokenizer
jobs, texts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
results = {}
for folder in jobs:
    tokenizer = Tokenizer.from_file(f"{folder}/tokenizer.json")
    session = onnxruntime.InferenceSession(f"{folder}/model.onnx")
    pad = tokenizer.token_to_id(json.load(open(f"{folder}/tokenizer_config.json"))["pad_token"])
    ids = [tokenizer.encode(text).ids for text in texts]
    width = max(map(len, ids))
    padded = {}
    for side in ("left", "right"):
        batch, mask = [], []
        for row in ids:
            fill = width - len(row)
            left = side == "left"
            batch.append([pad] * fill + row if left else row + [pad] * fill)
            mask.append([0] * fill + [1] * len(row) if left else [1] * len(row) + [0] * fill)
        feed = {"input_ids": np.array(batch), "attention_mask": np.array(mask)}
        (logits,) = session.run(["logits"], feed)
        if logits.ndim == 3:  # token logits: the real tokens' rows
            logits = [row[np.array(m, dtype=bool)] for row, m in zip(logits, mask)]
        padded[side] = [np.asarray(row).tolist() for row in logits]
    results[folder] = padded
forbidden = ("torch", "lsllm")
loaded = sorted(name for name, found in sys.modules.items() if found and name.split(".")[0] in forbidden)
print(json.dumps({"results": results, "loaded": loaded}))
"""


def features_of(classifier, texts: list[str]) -> list[dict]:
    if classifier.task != "token":
        return classifier.data.encode([SequenceExample(text) for text in texts], "texts", with_labels=False)
    return [{"input_ids": classifier.tokenizer(text)["input_ids"]} for text in texts]


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory) -> dict:
    """Per case: the run, its ONNX export, the run's torch model (fp32) and its logits per text."""
    root = tmp_path_factory.mktemp("onnx")
    made = {}
    for name, (task, attention, pooling, layers, shape) in CASES.items():
        run = saved_run(tiny_model, root / name, task, attention, pooling, layers, shape)
        torch_model = lsllm.load(run, device="cpu", precision="fp32")
        made[name] = {
            "run": run,
            "export": export_run(run, root / f"{name}-onnx", format="onnx", int8=name == "sequence-last"),
            "torch": torch_model,
            "logits": torch_model.logits(features_of(torch_model, TEXTS), batch_size=1),
        }
    return made


cases = pytest.mark.parametrize("name", list(CASES))


def assert_close(got: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(got) == len(expected)
    for ours, theirs in zip(got, expected, strict=True):
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


@cases
@pytest.mark.parametrize("batch_size", [1, 3, 8])
@pytest.mark.parametrize("side", ["left", "right"])
def test_onnx_logits_equal_torchs_for_any_batch_length_and_padding(exported, name, batch_size, side):
    classifier = lsllm.load(exported[name]["export"].path)  # an ONNX export runs on onnxruntime by default
    assert isinstance(classifier.model, OnnxModel)
    classifier.collate = Collator(classifier.tokenizer.pad_token_id, side)
    got = classifier.logits(features_of(classifier, TEXTS), batch_size=batch_size)
    assert_close(got, exported[name]["logits"])  # each text alone, in torch: padding changes nothing


@cases
def test_onnx_predicts_and_evaluates_like_the_run(exported, name, tmp_path):
    made = exported[name]
    onnx = lsllm.load(made["export"].path, runtime="onnx")
    expected = made["torch"].predict(TEXTS)
    assert_same(onnx.predict(TEXTS), expected)
    if made["torch"].task == "token":
        rows = [{"tokens": p["tokens"], "tags": p["tags"]} for p in expected]
    elif "value" in expected[0]:
        rows = [
            {"text": text, "label": round(p["value"], 1)} for text, p in zip(TEXTS, expected, strict=True)
        ]
    elif "labels" in expected[0]:
        rows = [
            {"text": text, "label": [x["label"] for x in p["labels"]]}
            for text, p in zip(TEXTS, expected, strict=True)
        ]
    else:
        rows = [{"text": text, "label": p["label"]} for text, p in zip(TEXTS, expected, strict=True)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert_same(onnx.evaluate(str(data)), made["torch"].evaluate(str(data)))  # numbers to 1e-5


def test_serve_answers_with_the_onnx_runtime(exported):
    made = exported["sequence-mean"]
    with running(lsllm.load(made["export"].path), max_wait_ms=20) as url:
        status, body = predict(url, {"inputs": TEXTS})
    assert status == 200
    assert_same(body["predictions"], made["torch"].predict(TEXTS))


def test_the_export_runs_with_onnxruntime_and_the_tokenizer_alone(exported):
    folders = {str(made["export"].path): name for name, made in exported.items()}
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-I", "-c", WITHOUT_TORCH, json.dumps(list(folders)), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["loaded"] == []
    for folder, padded in found["results"].items():
        for side in ("left", "right"):
            got = [torch.tensor(row) for row in padded[side]]
            assert_close(got, exported[folders[folder]]["logits"])


def test_the_folder_and_its_card_say_how_to_run_it(exported):
    folder = exported["sequence-mean"]["export"].path
    names = {path.name for path in folder.iterdir()}
    assert {
        "model.onnx",
        "model.onnx.data",
        "tokenizer.json",
        "config.yaml",
        "labels.json",
        "README.md",
    } <= names
    assert not names & {"config.json", "model.safetensors"}
    card = (folder / "README.md").read_text()
    assert (
        "Export format: onnx" in card and "onnxruntime.InferenceSession" in card and "pooling: mean" in card
    )


def test_the_int8_graph_quantizes_the_narrow_matrix_products_and_predicts_close_to_fp32(exported):
    import onnx

    made = exported["sequence-last"]
    assert (
        len(made["export"].notes) == 1
        and "int8 graph moved probabilities by up to" in made["export"].notes[0]
    )
    graph = onnx.load(str(made["export"].path / "model.int8.onnx")).graph
    weights = {weight.name: list(weight.dims) for weight in graph.initializer}
    kinds = [node.op_type for node in graph.node]
    # 2 layers x (q, k, v, o, gate, up) in int8; the down projections (input 64 wide, hidden 32) stay fp32
    assert kinds.count("MatMulInteger") == 12
    wide = [
        node for node in graph.node if node.op_type == "MatMul" and weights.get(node.input[1], [0])[0] == 64
    ]
    assert len(wide) == 2
    head = [node.op_type for node in graph.node if any(x.startswith("model.head.") for x in node.input)]
    assert head and set(head) <= {"Gemm", "MatMul"}  # the head in fp32
    classifier = lsllm.load(made["export"].path, precision="int8")
    got = classifier.logits(features_of(classifier, TEXTS))
    for ours, theirs in zip(got, made["logits"], strict=True):
        assert (ours.softmax(-1) - theirs.softmax(-1)).abs().max() < 0.05
    assert not torch.equal(torch.stack(got), torch.stack(made["logits"]))  # the int8 graph, not the fp32 one


def test_runtime_mistakes_are_one_line_errors_naming_the_fix(exported):
    made = exported["sequence-last"]
    with pytest.raises(lsllm.LsllmError, match="is not one; write one with 'lsllm export RUN --format onnx"):
        lsllm.load(made["run"], runtime="onnx")
    with pytest.raises(lsllm.LsllmError, match="is an ONNX export, which onnxruntime runs"):
        lsllm.load(made["export"].path, runtime="torch")
    with pytest.raises(lsllm.LsllmError, match="in fp32 or int8, not bf16"):
        lsllm.load(made["export"].path, precision="bf16")
    with pytest.raises(lsllm.LsllmError, match=r"has no int8 graph.*--format onnx --int8"):
        lsllm.load(exported["sequence-mean"]["export"].path, precision="int8")
    with pytest.raises(lsllm.LsllmError, match="use it with --format onnx"):
        export_run(made["run"], made["run"].parent / "unused", int8=True)


def test_a_damaged_graph_names_the_fix(exported, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(exported["sequence-last"]["export"].path, broken)
    (broken / "model.onnx.data").write_bytes(b"cut short")
    with pytest.raises(lsllm.LsllmError, match="export the run again"):
        lsllm.load(broken)


def test_without_the_onnx_extra_the_error_names_the_install(exported, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else find_spec(name, *a)
    )
    with pytest.raises(lsllm.LsllmError, match=r"needs onnxscript.*pip install 'lsllm\[onnx\]'"):
        export_run(exported["sequence-last"]["run"], tmp_path / "export", format="onnx")
    assert not (tmp_path / "export").exists()
