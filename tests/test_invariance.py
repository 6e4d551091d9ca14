"""Padding (side and amount) and batch composition never change a prediction; causality holds end to end."""

import pytest

from tests.helpers import untrained_classifier

SHORT = "the film was good"
LONG = " ".join(["what a wonderful lovely terrible boring movie , and the acting was great"] * 6)
OTHERS = ["bad plot", "John Smith visited Paris", "the ending was awful and boring", LONG]

MODES = [
    ("sequence", "causal", "last"),
    ("sequence", "causal", "mean"),
    ("sequence", "causal", "max"),
    ("sequence", "bidirectional", "last"),
    ("sequence", "bidirectional", "mean"),
    ("sequence", "bidirectional", "max"),
    ("token", "causal", "last"),
    ("token", "bidirectional", "last"),
]


def numbers(row: dict) -> list[float]:
    return list(row["probs"].values()) if "probs" in row else row["scores"]


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize(("task", "attention", "pooling"), MODES)
def test_prediction_alone_equals_prediction_in_padded_batch(
    tiny_model, task, attention, pooling, padding_side
):
    classifier = untrained_classifier(tiny_model, task, attention, pooling, padding_side)
    alone = classifier.predict([SHORT], batch_size=1)[0]
    batched = classifier.predict([LONG, SHORT, *OTHERS], batch_size=8)[1]
    assert numbers(alone) == pytest.approx(numbers(batched), abs=1e-5)
    assert alone.get("label", alone.get("tags")) == batched.get("label", batched.get("tags"))


@pytest.mark.parametrize("arch", ["qwen2", "mistral"])
@pytest.mark.parametrize("task", ["sequence", "token"])
def test_batch_composition_and_order_do_not_matter(tiny_models, arch, task):
    classifier = untrained_classifier(tiny_models[arch], task, "bidirectional", "mean", "left")
    texts = [SHORT, *OTHERS]
    one_by_one = [classifier.predict([t], batch_size=1)[0] for t in texts]
    together = classifier.predict(list(reversed(texts)), batch_size=3)[::-1]
    for a, b in zip(one_by_one, together, strict=True):
        assert numbers(a) == pytest.approx(numbers(b), abs=1e-5)


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_first_word_sees_the_last_word_only_when_bidirectional(tiny_model, attention):
    classifier = untrained_classifier(tiny_model, "token", attention)
    first = classifier.predict(["John Smith visited Paris"])[0]["scores"][0]
    changed = classifier.predict(["John Smith visited Berlin"])[0]["scores"][0]
    if attention == "causal":
        assert first == changed
    else:
        assert first != pytest.approx(changed, abs=1e-7)
