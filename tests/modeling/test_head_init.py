"""--head-init label-words: before any training, the label-supervised model scores each label exactly as
the language model scores the label's word at the prompt's end, i.e. what zero-shot prompting gives."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

import lsllm
from lsllm.config import TrainConfig
from lsllm.data.encoding import Encoder
from lsllm.data.examples import SequenceExample
from lsllm.data.prompts import label_words
from lsllm.errors import LsllmError
from lsllm.modeling.backbone import load_tokenizer
from lsllm.modeling.head_init import (
    init_head_from_label_words,
    label_word_rows,
    output_embeddings,
    tag_words,
)
from lsllm.modeling.model import build_model
from tests.helpers import write_jsonl
from tests.tiny import build_tiny_causal_lm

TEMPLATE = "Review: {text}\nSentiment:"
TEXTS = ["the film was good and the acting was great", "what a boring plot", "awful"]


@pytest.fixture(scope="module", params=["untied", "tied"])
def causal_lm(request, tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp(request.param), tied=request.param == "tied")


@torch.no_grad()
def test_at_step_0_the_head_gives_the_language_models_logits_of_the_label_words(causal_lm):
    config = TrainConfig(model=str(causal_lm), task="sequence", template=TEMPLATE, head_init="label-words")
    tokenizer = load_tokenizer(str(causal_lm))
    model = build_model(config, 2).eval()
    words = label_words(["bad", "good"], None, chat=False)
    lm_rows = output_embeddings(str(causal_lm), model.backbone)
    init_head_from_label_words(model.head, label_word_rows(tokenizer, lm_rows, words))
    tokens = [tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in words]
    features = Encoder.for_config(tokenizer, config).encode_sequences(
        [SequenceExample(t) for t in TEXTS], None, "t"
    )
    language_model = AutoModelForCausalLM.from_pretrained(causal_lm).eval()
    for feature in features:
        ids = torch.tensor([feature["input_ids"]])
        ours = model(input_ids=ids, attention_mask=torch.ones_like(ids))["logits"][0]
        theirs = language_model(input_ids=ids).logits[0, -1, tokens]
        assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)


def test_label_words_default_to_the_labels_after_a_space_and_can_be_given():
    assert label_words(["neg", "pos"], None, chat=False) == [" neg", " pos"]
    assert label_words(["neg", "pos"], None, chat=True) == ["neg", "pos"]
    assert label_words(["neg", "pos"], ["neg= bad"], chat=False) == [" bad", " pos"]
    with pytest.raises(LsllmError, match="names labels the run does not have \\(neutral\\)"):
        label_words(["neg", "pos"], ["neutral= meh"], chat=False)


@torch.no_grad()
def test_a_causal_token_head_starts_as_the_next_word_logits_of_each_entity_type(causal_lm):
    """The token analogue: each word's tag scores are the language model's logits, at that token, of
    the tag's entity-type word coming next."""
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    config = TrainConfig(model=str(causal_lm), task="token", attention="causal", head_init="label-words")
    tokenizer = load_tokenizer(str(causal_lm))
    model = build_model(config, len(tags)).eval()
    words = tag_words(tags, ["PER= good", "LOC= bad"])
    lm_rows = output_embeddings(str(causal_lm), model.backbone)
    init_head_from_label_words(model.head, label_word_rows(tokenizer, lm_rows, words, distinct=False))
    tokens = [tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in words]
    ids = torch.tensor([tokenizer("John Smith visited Paris")["input_ids"]])
    ours = model(input_ids=ids, attention_mask=torch.ones_like(ids))["logits"][0]
    theirs = AutoModelForCausalLM.from_pretrained(causal_lm).eval()(input_ids=ids).logits[0][:, tokens]
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.equal(ours[:, 1], ours[:, 2])  # B-PER and I-PER start alike; training tells them apart


def test_tag_words_come_from_entity_types_and_can_be_given():
    tags = ["O", "B-PER", "I-PER", "B-MISC"]
    assert tag_words(tags, None) == [" other", " per", " per", " misc"]
    given = ["PER= person", "B-MISC= thing", "O= none"]
    assert tag_words(tags, given) == [" none", " person", " person", " thing"]
    with pytest.raises(LsllmError, match="tags or entity types the run does not have \\(ORG\\)"):
        tag_words(tags, ["ORG= company"])


def test_words_that_start_alike_get_the_mean_of_their_tokens_rows_and_the_others_their_first(causal_lm):
    """SST-5's labels "very negative" and "very positive" start with the same token: a row of that token
    alone would make the two labels one."""
    tokenizer = load_tokenizer(str(causal_lm))
    lm_rows = torch.randn(tokenizer.vocab_size + 8, 16)
    words = [" good", " goodness", " bad"]
    ids = {word: tokenizer(word, add_special_tokens=False)["input_ids"] for word in words}
    assert ids[" goodness"][0] == ids[" good"][0] and len(ids[" goodness"]) > 1  # the case under test
    for distinct in (True, False):
        rows = label_word_rows(tokenizer, lm_rows, words, distinct)
        assert torch.equal(rows[0], lm_rows[ids[" good"]].mean(0))
        assert torch.equal(rows[1], lm_rows[ids[" goodness"]].mean(0))
        assert torch.equal(rows[2], lm_rows[ids[" bad"][0]])
        assert not torch.equal(rows[0], rows[1])


def test_one_word_for_two_labels_is_refused_but_tags_of_one_type_share_it(causal_lm):
    tokenizer = load_tokenizer(str(causal_lm))
    lm_rows = torch.randn(tokenizer.vocab_size + 8, 16)
    rows = label_word_rows(tokenizer, lm_rows, [" good", " good", " bad"], distinct=False)
    assert torch.equal(rows[0], rows[1]) and not torch.equal(rows[0], rows[2])
    with pytest.raises(LsllmError, match=r"label word\(s\) ' good' name several labels.*--label-words"):
        label_word_rows(tokenizer, lm_rows, [" good", " bad", " good"])


def test_different_words_of_the_same_tokens_in_other_numbers_are_refused(causal_lm):
    """Their mean rows would be one row: " good good" and " good good good" are the same mean."""
    tokenizer = load_tokenizer(str(causal_lm))
    lm_rows = torch.randn(tokenizer.vocab_size + 8, 16)
    with pytest.raises(LsllmError, match=r"' good good', ' good good good' are made of the same tokens"):
        label_word_rows(tokenizer, lm_rows, [" good good", " bad", " good good good"])


def test_a_model_folder_without_a_language_model_head_is_refused(tiny_model):
    backbone = build_model(TrainConfig(model=str(tiny_model), task="sequence"), 2).backbone
    with pytest.raises(LsllmError, match=r"has no language-model head weights .*use --head-init random"):
        output_embeddings(str(tiny_model), backbone)


def test_a_templated_label_word_run_trains_saves_and_predicts_the_same_after_reload(causal_lm, tmp_path):
    from tests.helpers import sentiment_rows

    files = {
        s: write_jsonl(tmp_path / f"{s}.jsonl", sentiment_rows(16, seed))
        for seed, s in enumerate(["train", "dev"])
    }
    config = lsllm.TrainConfig(
        model=str(causal_lm), task="sequence", train=str(files["train"]), dev=str(files["dev"]),
        output=str(tmp_path / "run"), template=TEMPLATE, head_init="label-words", label_words=["pos= good"],
        epochs=1, batch_size=8, lora_r=4, precision="fp32",
    )  # fmt: skip
    result = lsllm.train(config)
    reloaded = lsllm.load(result.run_dir, precision="fp32")
    assert reloaded.data.encoder.prompt.template == TEMPLATE
    rows = reloaded.predict(TEXTS)
    assert rows == lsllm.load(result.run_dir, precision="fp32").predict(TEXTS)
    assert reloaded.evaluate(str(files["dev"])) == result.metrics["dev"]


@pytest.mark.parametrize(
    ("instruction", "asked"), [(None, "Classify the text."), ("Is the review kind?", "Is the review kind?")]
)
def test_a_run_with_template_auto_keeps_the_written_out_prompt(causal_lm, tmp_path, instruction, asked):
    from tests.helpers import sentiment_rows

    files = {
        s: write_jsonl(tmp_path / f"{s}.jsonl", sentiment_rows(16, seed))
        for seed, s in enumerate(["train", "dev"])
    }
    config = lsllm.TrainConfig(
        model=str(causal_lm), task="sequence", train=str(files["train"]), dev=str(files["dev"]),
        output=str(tmp_path / "run"), template="auto", instruction=instruction, head_init="label-words",
        epochs=1, batch_size=8, lora_r=4, precision="fp32",
    )  # fmt: skip
    result = lsllm.train(config)
    saved = lsllm.TrainConfig.from_yaml(result.run_dir / "config.yaml")
    expected = f"{asked} Answer with one of: neg, pos.\n\nText: {{text}}\nAnswer:"
    assert (saved.template, saved.chat_template) == (expected, False)  # the tiny tokenizer has no chat
    assert saved.instruction is None  # it lives on in the written-out template
    assert lsllm.load(result.run_dir, precision="fp32").data.encoder.prompt.template == expected
