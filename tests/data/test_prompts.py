"""Prompts: each text is put into the run's template (optionally the model's chat template), and a text
too long for max_length is cut so that the template, which ends where the answer goes, stays whole."""

from __future__ import annotations

import pytest

from lsllm.config import TrainConfig
from lsllm.data.encoding import Encoder
from lsllm.data.examples import SequenceExample
from lsllm.data.prompts import Prompt, resolve_template
from lsllm.errors import LsllmError
from tests.tiny import byte_level_tokenizer

TEMPLATE = "Review: {text}\nSentiment:"
CHAT = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"


@pytest.fixture(scope="module")
def tokenizer():
    return byte_level_tokenizer()


def encoder(tokenizer, max_length=64, **options) -> Encoder:
    config = TrainConfig(task="sequence", max_length=max_length, **options)
    return Encoder.for_config(tokenizer, config)


def test_each_text_is_encoded_inside_the_template(tokenizer):
    (feature,) = encoder(tokenizer, template=TEMPLATE).encode_sequences(
        [SequenceExample("a good film")], None, "t"
    )
    assert feature["input_ids"] == tokenizer("Review: a good film\nSentiment:")["input_ids"]
    assert "truncated" not in feature


def test_a_long_text_is_cut_and_the_template_kept_whole(tokenizer):
    text = "the plot was bad and the ending was awful " * 20
    (feature,) = encoder(tokenizer, max_length=24, template=TEMPLATE).encode_sequences(
        [SequenceExample(text)], None, "t"
    )
    ids = feature["input_ids"]
    suffix = tokenizer("\nSentiment:", add_special_tokens=False)["input_ids"]
    assert len(ids) <= 24 and ids[-len(suffix) :] == suffix and feature["truncated"] is True
    assert tokenizer.decode(ids).startswith("Review: the plot was bad")


def test_text_pairs_fill_both_places(tokenizer):
    prompt = Prompt("Premise: {text}\nHypothesis: {text_pair}\nAnswer:", chat=False, tokenizer=tokenizer)
    ids, cut = prompt.encode(SequenceExample("John visited Paris", "John was in Paris"), 64)
    assert tokenizer.decode(ids) == "Premise: John visited Paris\nHypothesis: John was in Paris\nAnswer:"
    assert not cut


def test_the_chat_template_wraps_the_prompt_as_the_users_turn(tokenizer):
    tokenizer = byte_level_tokenizer()
    tokenizer.chat_template = CHAT
    prompt = Prompt(TEMPLATE, chat=True, tokenizer=tokenizer)
    assert prompt.format("a good film", None) == "<user>Review: a good film\nSentiment:<assistant>"


@pytest.mark.parametrize(
    ("template", "chat", "message"),
    [
        ("Review: {text} {label}", False, "cannot be filled .*KeyError.*use \\{text\\}"),
        (TEMPLATE, True, "no chat template; leave out --chat-template"),
    ],
)
def test_a_template_that_cannot_be_filled_is_a_one_line_error(tokenizer, template, chat, message):
    with pytest.raises(LsllmError, match=message):
        Prompt(template, chat=chat, tokenizer=tokenizer).encode(SequenceExample("a film"), 64)


def test_a_template_longer_than_max_length_is_an_error(tokenizer):
    with pytest.raises(LsllmError, match=r"the --template alone is .* tokens, not fewer than --max-length 4"):
        encoder(tokenizer, max_length=4, template=TEMPLATE).encode_sequences(
            [SequenceExample("x " * 50)], None, "t"
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"template": "Review:"}, "has no \\{text\\}"),
        ({"chat_template": True}, "--chat-template needs a --template"),
        ({"chat_template": True, "template": "auto"}, "--template auto uses the model's chat template"),
        ({"instruction": "Is it {good}?"}, "--instruction fills --template auto's prompt; add --template"),
        ({"instruction": " ", "template": "auto"}, "--instruction is empty; give the sentence"),
        (
            {"instruction": "Rate it.", "template": "Review: {text}"},
            "--instruction fills --template auto's prompt",
        ),
        ({"task": "token", "template": "{text}"}, "are for sequence runs"),
        ({"label_words": ["pos"]}, "takes LABEL=WORD pairs, not 'pos'"),
    ],
)
def test_prompt_options_are_checked(options, message):
    config = TrainConfig(model="m", task="sequence", train="t", dev="d", output="o")
    for key, value in options.items():
        setattr(config, key, value)
    with pytest.raises(LsllmError, match=message):
        config.validate()


def auto(tokenizer, names, **options) -> TrainConfig:
    return resolve_template(TrainConfig(task="sequence", template="auto", **options), names, tokenizer)


def test_template_auto_names_the_labels_and_answers_in_the_chat_turn_where_there_is_one(tokenizer):
    plain = auto(tokenizer, ["neg", "pos"], label_words=["neg= bad {x}"])
    assert (plain.template, plain.chat_template) == (
        "Classify the text. Answer with one of: bad {{x}}, pos.\n\nText: {text}\nAnswer:",
        False,
    )
    assert Prompt(plain.template, False, tokenizer).format("nice", None).endswith("Text: nice\nAnswer:")
    chatty = byte_level_tokenizer()
    chatty.chat_template = CHAT
    chat = auto(chatty, [0, 1])
    assert chat.chat_template and chat.template == "Classify the text. Answer with one of: 0, 1.\n\n{text}"
    assert Prompt(chat.template, True, chatty).format("nice", None).endswith("\n\nnice<assistant>")
    pair = auto(tokenizer, ["no", "yes"], text_field=["a", "b"], text_pair=True)
    assert (
        Prompt(pair.template, False, tokenizer)
        .format("one", "two")
        .endswith("Text: one\nSecond text: two\nAnswer:")
    )
    written = TrainConfig(task="sequence", template="Review: {text}")
    assert resolve_template(written, ["neg", "pos"], tokenizer) is written


def test_an_instruction_replaces_the_generic_one_and_lives_on_in_the_written_template(tokenizer):
    asked = auto(tokenizer, ["neg", "pos"], instruction=" Is this {film} review kind? ")
    written = "Is this {{film}} review kind? Answer with one of: neg, pos.\n\nText: {text}\nAnswer:"
    assert asked.template == written
    assert asked.instruction is None  # the written template carries it; the saved run needs no more
    assert asked.validate(required=()) is asked
    shown = Prompt(asked.template, False, tokenizer).format("a fine film", None)
    assert shown == "Is this {film} review kind? Answer with one of: neg, pos.\n\nText: a fine film\nAnswer:"
