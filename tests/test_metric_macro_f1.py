"""--metric macro_f1 end to end: a single-label run on imbalanced data selects on dev macro-F1, saves the
label offsets it tuned on dev, and eval, predict, export and serve all decide through them."""

import json
import random
import shutil

import pytest
import torch
import yaml

import lsllm
from lsllm.data.examples import SequenceExample
from lsllm.decision import Decision
from lsllm.metrics import OFFSET_GRID, sequence_metrics
from tests.helpers import FILLER, NEGATIVE, POSITIVE, topic_rows, write_splits
from tests.serving.client import assert_same, call, predict, running
from tests.test_cli import FP32, TINY_TRAINING, one_line_error, train_args

LABELS = ["neg", "neutral", "pos"]


def skewed_rows(n: int, seed: int) -> list[dict]:
    """Two texts in three are neutral (fillers only); the rest carry a positive or a negative word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ["neutral", "neutral", "pos", "neutral", "neutral", "neg"][i % 6]
        words = rng.sample(FILLER, 4)
        if label != "neutral":
            words[rng.randrange(4)] = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        rows.append({"text": " ".join(words), "label": label})
    return rows


@pytest.fixture(scope="module")
def skewed_run(tiny_model, tmp_path_factory):
    from lsllm.cli import main

    root = tmp_path_factory.mktemp("macro")
    files = write_splits(root, skewed_rows, {"train": 36, "dev": 18, "test": 18})
    args = train_args(tiny_model, "sequence", files, root / "run", *TINY_TRAINING, "--metric", "macro_f1")
    assert main(args) == 0
    return root / "run", files


def texts_and_gold(path) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [row["text"] for row in rows], [row["label"] for row in rows]


def logits_of(classifier, texts: list[str]) -> torch.Tensor:
    examples = [SequenceExample(text) for text in texts]
    return torch.stack(classifier.logits(classifier.data.encode(examples, "texts", with_labels=False)))


def macro_f1(classifier, texts: list[str], gold: list[str], decision: Decision) -> float:
    logits = logits_of(classifier, texts)
    predicted = decision.decide(logits).tolist()
    return sequence_metrics([LABELS.index(g) for g in gold], predicted, LABELS)["macro_f1"]


def test_the_run_saves_offsets_tuned_for_dev_macro_f1_and_selects_on_it(skewed_run):
    run, files = skewed_run
    assert yaml.safe_load((run / "config.yaml").read_text())["metric"] == "macro_f1"
    saved = json.loads((run / "offsets.json").read_text())
    assert list(saved["offsets"]) == LABELS and set(saved["offsets"].values()) <= set(OFFSET_GRID)
    classifier = lsllm.load(run, precision="fp32")
    assert classifier.decision == Decision("single", offsets=tuple(saved["offsets"].values()))
    texts, gold = texts_and_gold(files["dev"])
    metrics = json.loads((run / "metrics.json").read_text())
    tuned = macro_f1(classifier, texts, gold, classifier.decision)
    assert metrics["dev"]["macro_f1"] == pytest.approx(tuned)
    assert tuned >= macro_f1(classifier, texts, gold, Decision("single"))  # never below plain argmax
    log = [json.loads(line) for line in (run / "training_log.jsonl").read_text().splitlines()]
    best = max((r for r in log if "eval_macro_f1" in r), key=lambda r: r["eval_macro_f1"])
    assert metrics["best_checkpoint"].endswith(f"checkpoint-{best['step']}")


def test_predict_eval_export_and_serve_decide_through_the_offsets(skewed_run, tmp_path, in_process):
    """With a large offset for the rarest label, predictions follow it: the probabilities are the
    model's shifted by the offsets, the chosen label the likeliest, in every way of running the model."""
    original, files = skewed_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    offsets = {"neg": 0.0, "neutral": 0.0, "pos": 3.0}
    (run / "offsets.json").write_text(json.dumps({"offsets": offsets, "tuned_for": "macro_f1"}))
    texts, gold = texts_and_gold(files["test"])
    classifier = lsllm.load(run, precision="fp32")
    rows = classifier.predict(texts)
    logits = logits_of(classifier, texts)
    shifted = (logits + torch.tensor([0.0, 0.0, 3.0])).softmax(-1)
    for row, probs in zip(rows, shifted, strict=True):
        assert list(row["probs"].values()) == pytest.approx(probs.tolist(), abs=1e-6)
        assert row["label"] == LABELS[int(probs.argmax())] and row["score"] == max(row["probs"].values())
    plain = [LABELS[int(i)] for i in logits.argmax(-1)]
    assert sum(r["label"] == "pos" for r in rows) > sum(label == "pos" for label in plain)

    evaluated = tmp_path / "eval.json"
    result = in_process("eval", str(run), "--data", str(files["test"]), "--output", str(evaluated), *FP32)
    assert result.returncode == 0, result.stderr
    index = LABELS.index
    expected = sequence_metrics([index(g) for g in gold], [index(r["label"]) for r in rows], LABELS)
    assert json.loads(evaluated.read_text())["macro_f1"] == pytest.approx(expected["macro_f1"])

    for format in ("lsllm", "transformers", "onnx"):
        folder = tmp_path / format
        assert in_process("export", str(run), "--output", str(folder), "--format", format).returncode == 0
        assert json.loads((folder / "offsets.json").read_text())["offsets"] == offsets
        assert "offsets.json" in (folder / "README.md").read_text()
        assert_same(lsllm.load(folder, precision="fp32").predict(texts), rows)
    with running(classifier) as url:
        status, body = predict(url, {"inputs": texts})
        assert status == 200
        assert_same(body["predictions"], rows)
        status, info = call(url, "GET", "/labels")
        assert (status, info["labels"], info["offsets"], info["thresholds"]) == (200, LABELS, offsets, None)


def test_metric_is_refused_where_it_means_nothing(skewed_run, tiny_model, tmp_path, in_process):
    _, files = skewed_run

    def train_error(task: str, *extra: str) -> str:
        return one_line_error(in_process(*train_args(tiny_model, task, files, tmp_path / "out", *extra)))

    token = train_error("token", "--metric", "macro_f1")
    assert "--metric is for single-label sequence runs" in token and "leave it out" in token
    multi = train_error("sequence", "--metric", "macro_f1", "--multi-label")
    assert "--metric is for single-label sequence runs" in multi
    lists = write_splits(tmp_path, topic_rows, {"train": 8, "dev": 4})  # multi-label, found in the data
    found = one_line_error(
        in_process(*train_args(tiny_model, "sequence", lists, tmp_path / "out", "--metric", "macro_f1"))
    )
    assert "--metric is for single-label sequence runs" in found
    config = {
        "model": str(tiny_model),
        "task": "sequence",
        "metric": "f1",
        **{k: str(v) for k, v in files.items()},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    unknown = one_line_error(in_process("train", "--config", str(tmp_path / "run.yaml"), "--output", "x"))
    assert "--metric must be one of accuracy, macro_f1, not 'f1'" in unknown
