"""Multi-label and regression runs of our own data through every command: train (from a YAML config),
eval, predict, export and serve; the tuned thresholds are what predict uses; bad input is a one-line error."""

import csv
import json
import shutil

import pytest
import yaml

import lsllm
from lsllm.metrics import THRESHOLD_GRID
from tests.helpers import score_rows, topic_rows, write_jsonl, write_splits
from tests.serving.client import assert_same, call, predict, running
from tests.test_cli import FP32, TINY_TRAINING, one_line_error, train_args

SIZES = {"train": 32, "dev": 12, "test": 12}
TRAINING = [*TINY_TRAINING, "--epochs", "6"]  # the later flag wins
TOPICS = ["person", "place", "praise"]


def write_csv(path, rows: list[dict]):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def shape_runs(tiny_model, tmp_path_factory):
    """A multi-label run trained from a YAML config (its labels are lists in JSONL, found without
    --multi-label), and a regression run trained with flags on CSV, where numbers are text."""
    from lsllm.cli import main

    root = tmp_path_factory.mktemp("shapes")
    multi = write_splits(root, topic_rows, SIZES, prefix="multi-")
    regression = {
        split: write_csv(root / f"score-{split}.csv", score_rows(n, seed))
        for seed, (split, n) in enumerate(SIZES.items(), start=1)
    }
    config = root / "multi.yaml"
    options = {
        "model": str(tiny_model),
        "task": "sequence",
        "class_weights": "auto",
        "threshold_per_label": True,
    }
    config.write_text(yaml.safe_dump({**options, **{split: str(path) for split, path in multi.items()}}))
    assert main(["train", "--config", str(config), "--output", str(root / "multi-run"), *TRAINING]) == 0
    args = train_args(
        tiny_model, "regression", regression, root / "score-run", *TRAINING, "--pooling", "mean"
    )
    assert main(args) == 0
    return {
        "multi": (root / "multi-run", multi),
        "regression": (root / "score-run", regression),
    }


def losses(run) -> list[float]:
    records = [json.loads(line) for line in (run / "training_log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def read_rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def gold_of(path) -> list:
    if path.suffix == ".csv":
        return [float(row["label"]) for row in csv.DictReader(path.open(encoding="utf-8"))]
    return [row["label"] for row in read_rows(path)]


def test_a_multi_label_run_is_found_in_the_data_and_saved_with_its_thresholds(shape_runs):
    run, _ = shape_runs["multi"]
    assert json.loads((run / "labels.json").read_text()) == {"names": TOPICS, "shape": "multi"}
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["multi_label"], saved["class_weights"], saved["threshold_per_label"]) == (
        True,
        "auto",
        True,
    )
    thresholds = json.loads((run / "thresholds.json").read_text())
    assert thresholds["per_label"] is True and list(thresholds["thresholds"]) == TOPICS
    assert set(thresholds["thresholds"].values()) <= set(THRESHOLD_GRID)
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("dev", "test"):
        assert {"micro_f1", "macro_f1", "exact_match"} <= set(metrics[split])
        assert [s["threshold"] for s in metrics[split]["per_label"].values()] == list(
            thresholds["thresholds"].values()
        )
    curve = losses(run)
    assert curve[-1] < curve[0]  # binary cross-entropy falls


def test_multi_label_eval_predict_export_and_serve_agree(shape_runs, tmp_path, in_process):
    run, files = shape_runs["multi"]
    metrics = tmp_path / "eval.json"
    evaluated = in_process("eval", str(run), "--data", str(files["test"]), "--output", str(metrics), *FP32)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "micro-F1" in evaluated.stdout and "threshold" in evaluated.stdout
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert json.loads(metrics.read_text())["micro_f1"] == test["micro_f1"]

    out = tmp_path / "rows.jsonl"
    assert (
        in_process("predict", str(run), "--input", str(files["test"]), "--output", str(out), *FP32).returncode
        == 0
    )
    rows = read_rows(out)
    thresholds = json.loads((run / "thresholds.json").read_text())["thresholds"]
    for row in rows:  # every label at or above its threshold, with its probability, best first
        above = sorted((p, label) for label, p in row["probs"].items() if p >= thresholds[label])
        assert row["labels"] == [{"label": label, "score": p} for p, label in reversed(above)]
    gold = [set(labels) for labels in gold_of(files["test"])]
    predicted = [{entry["label"] for entry in row["labels"]} for row in rows]
    true_positives = sum(len(g & p) for g, p in zip(gold, predicted, strict=True))
    assert test["micro_f1"] == pytest.approx(
        2 * true_positives / (sum(map(len, gold)) + sum(map(len, predicted)))
    )

    folder = tmp_path / "export"
    assert in_process("export", str(run), "--output", str(folder), "--merge").returncode == 0
    texts = [row["text"] for row in read_rows(files["test"])]
    classifier = lsllm.load(run, precision="fp32")
    expected = classifier.predict(texts)
    assert_same(expected, rows)
    assert_same(lsllm.load(folder, precision="fp32").predict(texts), expected)
    with running(classifier) as url:
        status, body = predict(url, {"inputs": texts, "top_k": 2})
        assert status == 200
        assert_same(body["predictions"], classifier.predict(texts, top_k=2))
        assert [len(row["top"]) for row in body["predictions"]] == [2] * len(texts)
        status, info = call(url, "GET", "/labels")
        assert (info["multi_label"], info["thresholds"]) == (True, thresholds)


def test_the_tuned_thresholds_are_the_ones_predict_and_eval_use(shape_runs, tmp_path, in_process):
    """Moving each label's threshold to the middle of its probabilities on the test texts changes which
    labels predict gives, exactly as the new thresholds say, and eval scores those predictions."""
    original, files = shape_runs["multi"]
    run = tmp_path / "run"
    shutil.copytree(original, run)
    texts = [row["text"] for row in read_rows(files["test"])]
    before = lsllm.load(run, precision="fp32").predict(texts)
    moved = {
        label: sorted(row["probs"][label] for row in before)[len(before) // 2] for label in TOPICS
    }  # the median: half the texts at or above it
    (run / "thresholds.json").write_text(json.dumps({"thresholds": moved, "per_label": True}))
    after = lsllm.load(run, precision="fp32").predict(texts)
    assert [row["probs"] for row in after] == [row["probs"] for row in before]
    for row in after:
        assert {entry["label"] for entry in row["labels"]} == {
            label for label in TOPICS if row["probs"][label] >= moved[label]
        }
    for label in TOPICS:
        assert sum(any(e["label"] == label for e in row["labels"]) for row in after) >= len(texts) // 2
    evaluated = tmp_path / "eval.json"
    assert (
        in_process(
            "eval", str(run), "--data", str(files["test"]), "--output", str(evaluated), *FP32
        ).returncode
        == 0
    )
    scores = json.loads(evaluated.read_text())
    assert [scores["per_label"][label]["threshold"] for label in TOPICS] == [moved[label] for label in TOPICS]
    gold = gold_of(files["test"])
    for label in TOPICS:
        predicted = [any(e["label"] == label for e in row["labels"]) for row in after]
        relevant = [label in labels for labels in gold]
        hits = sum(p and r for p, r in zip(predicted, relevant, strict=True))
        assert scores["per_label"][label]["f1"] == pytest.approx(2 * hits / (sum(predicted) + sum(relevant)))


def test_regression_run_through_eval_predict_export_and_serve(shape_runs, tmp_path, in_process):
    run, files = shape_runs["regression"]
    assert json.loads((run / "labels.json").read_text()) == {"names": ["label"], "shape": "regression"}
    assert not (run / "thresholds.json").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) == {"mse", "pearson", "spearman", "count"}
    curve = losses(run)
    assert curve[-1] < curve[0]

    evaluated = in_process(
        "eval", str(run), "--data", str(files["test"]), "--output", str(tmp_path / "e.json"), *FP32
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "pearson" in evaluated.stdout and "spearman" in evaluated.stdout
    assert json.loads((tmp_path / "e.json").read_text())["mse"] == metrics["test"]["mse"]

    out = tmp_path / "rows.jsonl"
    assert (
        in_process("predict", str(run), "--input", str(files["test"]), "--output", str(out), *FP32).returncode
        == 0
    )
    rows = read_rows(out)
    assert all(set(row) == {"value"} and isinstance(row["value"], float) for row in rows)
    gold = gold_of(files["test"])
    errors = [(row["value"] - target) ** 2 for row, target in zip(rows, gold, strict=True)]
    assert metrics["test"]["mse"] == pytest.approx(sum(errors) / len(errors))

    folder = tmp_path / "export"
    assert in_process("export", str(run), "--output", str(folder)).returncode == 0
    texts = [row["text"] for row in csv.DictReader(files["test"].open(encoding="utf-8"))]
    classifier = lsllm.load(run, precision="fp32")
    assert_same(classifier.predict(texts), rows)
    assert_same(lsllm.load(folder, precision="fp32").predict(texts), rows)
    with running(classifier) as url:
        status, body = predict(url, {"inputs": texts})
        assert status == 200
        assert_same(body["predictions"], rows)
        status, body = predict(url, {"inputs": texts[0], "top_k": 2})
        assert status == 422 and "top_k applies to sequence runs only" in json.dumps(body)
        status, info = call(url, "GET", "/labels")
        assert (info["task"], info["labels"], info["multi_label"], info["thresholds"]) == (
            "regression",
            ["label"],
            False,
            None,
        )


def test_bad_labels_and_options_give_one_line_errors(shape_runs, tiny_model, tmp_path, in_process):
    multi_run, multi = shape_runs["multi"]
    _, regression = shape_runs["regression"]

    def train_error(task: str, files: dict, *extra: str) -> str:
        return one_line_error(in_process(*train_args(tiny_model, task, files, tmp_path / "out", *extra)))

    listed = train_error("regression", {"train": multi["train"], "dev": multi["dev"]})
    assert "row 1 of" in listed and "has a list of labels" in listed and "one number per row" in listed
    words = write_jsonl(tmp_path / "words.jsonl", [{"text": "good", "label": "high"}])
    not_a_number = train_error("regression", {"train": words, "dev": regression["dev"]})
    assert "label 'high', which is not a number" in not_a_number
    alien = write_jsonl(tmp_path / "dev.jsonl", [{"text": "Paris", "label": ["place", "alien"]}])
    unknown = train_error("sequence", {"train": multi["train"], "dev": alien})
    assert (
        "label 'alien' in" in unknown and "not among the training labels (person, place, praise)" in unknown
    )
    token = train_error("token", {"train": multi["train"], "dev": multi["dev"]}, "--multi-label")
    assert "--multi-label" in token and "--task token" in token
    weighted = train_error("regression", regression, "--class-weights", "auto")
    assert "--class-weights" in weighted and "--task regression" in weighted
    single = write_jsonl(
        tmp_path / "single.jsonl", [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}]
    )
    listed_dev = train_error("sequence", {"train": single, "dev": multi["dev"]})
    assert (
        "is a list, but this run learned one label per text" in listed_dev and "--multi-label" in listed_dev
    )

    untuned = tmp_path / "untuned"
    shutil.copytree(multi_run, untuned)
    (untuned / "thresholds.json").unlink()
    message = one_line_error(in_process("predict", str(untuned), "Paris"))
    assert "no thresholds.json" in message and "resume" in message


@pytest.mark.parametrize(
    ("shape", "picture"), [("multi", "per_label_f1.png"), ("regression", "predicted_vs_true.png")]
)
def test_each_shape_gets_its_own_pictures_in_the_run_and_from_eval(
    shape_runs, tmp_path, in_process, shape, picture
):
    run, files = shape_runs[shape]
    assert (run / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / picture).read_bytes()[:4] == b"\x89PNG"
    assert not (run / "confusion_matrix.png").exists()  # a confusion matrix is for one label per text
    evaluated = in_process(
        "eval", str(run), "--data", str(files["test"]), "--output", str(tmp_path / "e.json")
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"picture to {tmp_path / f'e-{picture}'}" in evaluated.stdout
    assert (tmp_path / f"e-{picture}").read_bytes()[:4] == b"\x89PNG"
