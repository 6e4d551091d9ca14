"""Prediction for real text: CoNLL-style word splitting with exact offsets, windows over long token inputs,
head truncation of long sequences, and top-k labels."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from tokenizers import processors

from lsllm.cli import main
from lsllm.data.encoding import Encoder
from lsllm.data.examples import TokenExample
from lsllm.data.task import TaskData
from lsllm.data.words import word_spans
from lsllm.errors import LsllmError
from lsllm.inference import Classifier
from lsllm.modeling.backbone import load_tokenizer
from tests.helpers import saved_run, untrained_classifier
from tests.tiny import CORPUS

LONG_WORDS = " ".join(CORPUS * 3).split()  # 114 words, about as many tokens
LONG = " ".join(LONG_WORDS)


def words(text: str) -> list[str]:
    return [text[start:end] for start, end in word_spans(text)]


def with_max_length(classifier, max_length: int):
    """The same model, encoding with another --max-length."""
    config = dataclasses.replace(classifier.data.config, max_length=max_length)
    classifier.data = TaskData(config, classifier.data.labels, Encoder(classifier.tokenizer, max_length))
    return classifier


def always(classifier, tag: str):
    """Make the head predict `tag` for every token, so the entities are known in advance."""
    head = classifier.model.head
    head.weight.data.zero_()
    head.bias.data.zero_()
    head.bias.data[classifier.labels.index(tag)] = 5.0
    return classifier


@pytest.fixture
def tagger(tiny_model):
    return untrained_classifier(tiny_model, "token", "bidirectional")


@pytest.fixture(scope="module")
def sentiment(tiny_model):
    return untrained_classifier(tiny_model, "sequence", "causal", "mean")


ALWAYS = math.exp(5) / (math.exp(5) + 4)  # the probability `always` gives its tag, of 5


def test_entities_keep_the_original_text_and_offsets(tagger):
    text = "  New  York,\tNY \n"
    row = always(tagger, "I-LOC").predict([text])[0]  # all I-LOC: one entity over every word
    assert row["tokens"] == ["New", "York", ",", "NY"]
    assert row["entities"] == [
        {
            "type": "LOC",
            "score": pytest.approx(ALWAYS),
            "start": 0,
            "end": 4,
            "text": "New  York,\tNY",
            "start_char": 2,
            "end_char": 15,
        }
    ]


def test_entities_of_non_ascii_text_slice_it_exactly(tagger):
    text = "Jose\u0301 flew to Köln (Deutschland) 🇩🇪, then 東京."
    row = always(tagger, "B-PER").predict([text])[0]  # all B-PER: one entity per word
    assert [e["text"] for e in row["entities"]] == row["tokens"] == words(text)
    assert "Jose\u0301" in row["tokens"] and "東" in row["tokens"] and "🇩🇪" in row["tokens"]
    for entity in row["entities"]:
        assert text[entity["start_char"] : entity["end_char"]] == entity["text"]


def test_pre_split_words_keep_their_words_and_get_no_offsets(tagger):
    row = always(tagger, "I-LOC").predict([["New", "York", "."]])[0]
    assert row["tokens"] == ["New", "York", "."]
    assert row["entities"] == [
        {"type": "LOC", "score": pytest.approx(ALWAYS), "start": 0, "end": 3, "text": "New York ."}
    ]


def leaning_to(classifier, tag: str, bias: float):
    """The random head, with `tag` favoured by `bias`: words get the tag with probabilities that differ."""
    classifier.model.head.bias.data[classifier.labels.index(tag)] += bias
    return classifier


def test_an_entitys_score_is_the_mean_of_its_words_tag_probabilities(tagger):
    words = ["John", "Smith", "visited", "New", "York"]
    row = leaning_to(tagger, "I-LOC", 2.0).predict([words])[0]
    # by hand: each word's first token's probability of its predicted tag, from the model's logits
    alignment = tagger.data.encoder.align(words)
    probs = tagger.logits([{"input_ids": alignment.input_ids}])[0].softmax(-1)
    best = [float(probs[token].max()) for token in alignment.word_tokens]
    assert row["tags"] == ["I-LOC"] * 5
    assert max(best) - min(best) > 0.05  # the words differ, so the mean is not any one word's
    [entity] = row["entities"]
    assert entity["score"] == pytest.approx(sum(best) / 5, abs=1e-6)


def test_min_score_leaves_out_weaker_entities_only(tagger):
    text = "John Smith visited Paris"
    tagger = leaning_to(tagger, "B-PER", 1.5)  # one entity per word, each its own score
    full = tagger.predict([text])[0]
    scores = sorted(e["score"] for e in full["entities"])
    assert len(scores) == 4 and scores[0] < scores[-1]
    threshold = (scores[1] + scores[2]) / 2
    kept = tagger.predict([text], min_score=threshold)[0]
    assert kept["entities"] == [e for e in full["entities"] if e["score"] >= threshold]
    assert len(kept["entities"]) == 2
    assert (kept["tags"], kept["scores"]) == (full["tags"], full["scores"])
    assert tagger.predict([text], min_score=0)[0] == full
    assert tagger.predict([text], min_score=1)[0]["entities"] == []


@pytest.mark.parametrize("value", [-0.1, 1.5, True, "0.5", float("nan")])
def test_min_score_outside_0_to_1_is_an_error(tagger, value):
    with pytest.raises(LsllmError, match="min_score must be a number from 0 to 1"):
        tagger.predict(["John Smith"], min_score=value)


def test_min_score_is_for_token_runs_only(sentiment):
    with pytest.raises(LsllmError, match="min_score applies to token runs only"):
        sentiment.predict(["the film was good"], min_score=0.5)


# --- long token inputs: windows ------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_short_inputs_are_one_window_as_before(tiny_model, attention):
    encoder = Encoder(load_tokenizer(str(tiny_model)), 64)
    text = "John Smith visited Paris , last week"
    spans = word_spans(text)
    assert encoder.windows(text, spans, attention == "causal") == [encoder.align_text(text, spans)]


def test_windows_keep_the_tokenizers_special_tokens(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    eos = tokenizer.convert_tokens_to_ids("<eos>")
    tokenizer.backend_tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=True),
            processors.TemplateProcessing(single="<eos> $A <eos>", special_tokens=[("<eos>", eos)]),
        ]
    )
    spans = word_spans(LONG)
    windows = Encoder(tokenizer, 16).windows(LONG, spans, causal=False)
    assert len(windows) > 5
    for window in windows:
        assert window.input_ids[0] == window.input_ids[-1] == eos and len(window.input_ids) <= 16
    owners = [[w.word_tokens[i] is not None for w in windows].count(True) for i in range(len(spans))]
    assert owners == [1] * len(spans)
    short = "John Smith visited Paris"
    (window,) = Encoder(tokenizer, 16).windows(short, word_spans(short), causal=False)
    assert window.input_ids == tokenizer(short)["input_ids"]


def test_long_input_gets_a_tag_for_every_word(tiny_model):
    tagger = with_max_length(untrained_classifier(tiny_model, "token", "bidirectional"), 16)
    row = tagger.predict([LONG])[0]
    assert row["tokens"] == LONG_WORDS
    assert len(row["tags"]) == len(LONG_WORDS) and None not in row["scores"]
    assert len(tagger.data.encoder.windows(LONG, word_spans(LONG), causal=False)) > 5


def test_causal_windows_give_the_first_window_exactly_the_one_pass_prediction(tiny_model):
    classifier = untrained_classifier(tiny_model, "token", "causal")
    one_pass = with_max_length(classifier, 4096).predict([LONG])[0]
    windowed = with_max_length(classifier, 16).predict([LONG])[0]
    first = classifier.data.encoder.windows(LONG, word_spans(LONG), causal=True)[0]
    in_first = [i for i, token in enumerate(first.word_tokens) if token is not None]
    assert len(in_first) > 5
    assert [windowed["scores"][i] for i in in_first] == pytest.approx(
        [one_pass["scores"][i] for i in in_first], abs=1e-6
    )
    assert [windowed["tags"][i] for i in in_first] == [one_pass["tags"][i] for i in in_first]
    assert len(windowed["tags"]) == len(LONG_WORDS) and None not in windowed["scores"]
    alone = classifier.logits([{"input_ids": first.input_ids}])[0]
    whole = with_max_length(classifier, 4096).data.encoder.align_text(LONG, word_spans(LONG))
    together = classifier.logits([{"input_ids": whole.input_ids}])[0][: len(first.input_ids)]
    assert torch.allclose(alone, together, atol=1e-5)


def test_evaluation_tags_long_examples_whole(tiny_model):
    classifier = with_max_length(untrained_classifier(tiny_model, "token", "bidirectional"), 16)
    examples = [TokenExample(LONG_WORDS, ["O"] * len(LONG_WORDS)), TokenExample(["Paris"], ["B-LOC"])]
    predictions = classifier.predict_examples(examples)
    assert [len(p["tags"]) for p in predictions] == [len(LONG_WORDS), 1]
    assert all(None not in p["scores"] for p in predictions)
    metrics = classifier.evaluate_examples(examples, "long examples")
    assert 0.0 <= metrics["f1"] <= 1.0


# --- long sequence inputs: head truncation -------------------------------------------------------------


def test_long_sequences_keep_their_first_tokens_and_say_so(tiny_model):
    classifier = with_max_length(untrained_classifier(tiny_model, "sequence", "bidirectional", "mean"), 8)
    long_row, short_row = classifier.predict([LONG, "the film was good"])
    assert long_row["truncated"] is True and "truncated" not in short_row
    head = classifier.tokenizer(LONG)["input_ids"][:8]
    probs = classifier.logits([{"input_ids": head}])[0].softmax(-1).tolist()
    assert list(long_row["probs"].values()) == pytest.approx(probs, abs=1e-6)


# --- top-k ---------------------------------------------------------------------------------------------


def test_top_k_lists_the_likeliest_labels_best_first(sentiment):
    plain, top2, top9 = (sentiment.predict(["the film was good"], top_k=k)[0] for k in (None, 2, 9))
    assert "top" not in plain
    assert [t["label"] for t in top2["top"]] == sorted(plain["probs"], key=plain["probs"].get)[::-1][:2]
    assert top2["top"][0] == {"label": plain["label"], "score": plain["score"]}
    assert len(top9["top"]) == len(sentiment.labels)
    assert [t["score"] for t in top9["top"]] == sorted(plain["probs"].values(), reverse=True)


@pytest.mark.parametrize("k", [0, -1, True, 1.5])
def test_top_k_below_one_is_an_error(sentiment, k):
    with pytest.raises(LsllmError, match="top_k must be a whole number of at least 1"):
        sentiment.predict(["the film was good"], top_k=k)


def test_top_k_is_for_sequence_runs_only(tagger):
    with pytest.raises(LsllmError, match="sequence runs only"):
        tagger.predict(["John Smith"], top_k=2)


def test_predict_command_gives_top_k_and_explains_long_inputs(tiny_model, tmp_path, capsys):
    run = saved_run(tiny_model, tmp_path / "run", "sequence", "causal")
    assert main(["predict", str(run), "the film was good", "--top-k", "2", "--precision", "fp32"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(row["top"]) == 2 and row["top"][0]["label"] == row["label"]
    assert main(["predict", str(run), "the film was good", "--top-k", "0"]) == 2
    assert "top_k must be" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--top-k" in help_text and "keeps the first --max-length tokens" in help_text
    assert '"truncated": true' in help_text and "start_char" in help_text


# --- number format -------------------------------------------------------------------------------------


def number_format(classifier: Classifier) -> str:
    backbone = classifier.model.backbone
    linear = {n.rsplit(".", 1)[-1]: type(m) for n, m in backbone.named_modules() if hasattr(m, "in_features")}
    if torch.ao.nn.quantized.dynamic.Linear in linear.values():
        # every layer but the MLP's down projection, whose wide input has outliers
        assert linear.pop("down_proj") is torch.nn.Linear
        assert set(linear.values()) == {torch.ao.nn.quantized.dynamic.Linear}
        return "int8"
    return {torch.float32: "fp32", torch.bfloat16: "bf16"}[next(backbone.parameters()).dtype]


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("task", ["sequence", "token"])
def test_reduced_precision_prediction_agrees_with_fp32(tiny_model, tmp_path, task, precision):
    run = saved_run(tiny_model, tmp_path / "run", task, "bidirectional")
    text = "John Smith visited Paris and the film was good"
    fp32, reduced = (Classifier.load(run, "cpu", p) for p in ("fp32", precision))
    assert (number_format(fp32), number_format(reduced)) == ("fp32", precision)
    assert type(reduced.model.head) is torch.nn.Linear  # the head stays exact
    assert reduced.model.head.weight.dtype == torch.float32
    exact, rounded = fp32.predict([text])[0], reduced.predict([text])[0]
    numbers = "probs" if task == "sequence" else "scores"
    values = list(exact[numbers].values()) if task == "sequence" else exact[numbers]
    rounded_values = list(rounded[numbers].values()) if task == "sequence" else rounded[numbers]
    assert rounded_values == pytest.approx(values, abs=0.05)
    assert rounded_values != values  # it really computed in the reduced format


def test_int8_refuses_a_gpu_with_the_alternative(tiny_model, tmp_path):
    run = saved_run(tiny_model, tmp_path / "run", "sequence", "causal")
    with pytest.raises(LsllmError, match="int8 runs on a CPU only, not cuda; on a GPU use bf16"):
        Classifier.load(run, "cuda", "int8")


def test_predict_command_takes_the_number_format(tiny_model, tmp_path, capsys):
    run = saved_run(tiny_model, tmp_path / "run", "sequence", "causal")
    text = "the film was good"
    formats = ("fp32", "bf16", "int8")
    expected = {p: Classifier.load(run, "cpu", p).predict([text])[0]["probs"] for p in formats}
    for precision in formats:
        assert main(["predict", str(run), text, "--precision", precision]) == 0
        row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert row["probs"] == pytest.approx(expected[precision], abs=1e-6)
    assert expected["fp32"] != expected["bf16"] and expected["fp32"] != expected["int8"]
