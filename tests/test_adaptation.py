"""MNTP before supervised training: what it masks, that it teaches the unmasked model to predict masked
tokens, that it only moves the LoRA weights, and that a run with it trains, logs and resumes."""

import dataclasses
import json

import pytest
import torch

import lsllm
from lsllm.adaptation import adapt_with_mntp, mask_tokens, mntp_loss
from lsllm.config import TrainConfig
from lsllm.data.collate import Collator
from lsllm.data.encoding import IGNORE_INDEX
from lsllm.errors import LsllmError
from lsllm.modeling.backbone import load_tokenizer
from lsllm.modeling.head_init import output_embeddings
from lsllm.modeling.lora import add_lora
from lsllm.modeling.model import build_model
from tests.helpers import ner_rows, write_splits
from tests.tiny import CORPUS, build_tiny_causal_lm


@pytest.fixture(scope="module")
def causal_lm(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("lm"), tied=False)


@pytest.mark.parametrize("side", ["left", "right"])
def test_masking_skips_padding_and_each_texts_first_token(side):
    ids = torch.arange(1, 41).reshape(4, 10)
    mask = torch.ones_like(ids)
    for row, length in enumerate([10, 6, 3, 1]):
        pad = slice(0, 10 - length) if side == "left" else slice(length, None)
        mask[row, pad] = 0
    masked, targets = mask_tokens(ids, mask, 0.99, 0, torch.Generator().manual_seed(0))
    chosen = targets != IGNORE_INDEX
    first_real = mask.argmax(dim=1)
    assert not chosen[~mask.bool()].any() and not chosen[torch.arange(4), first_real].any()
    assert chosen.sum() == mask.sum() - 4  # every other real token, at a ratio near 1
    assert torch.equal(targets[chosen], ids[chosen]) and (masked[chosen] == 0).all()
    assert torch.equal(masked[~chosen], ids[~chosen])


def mntp_setup(path, steps: int):
    config = TrainConfig(
        model=str(path),
        task="token",
        attention="bidirectional",
        mntp_steps=steps,
        learning_rate=1e-2,
        batch_size=4,
        lora_r=8,
        lora_dropout=0.0,
    )
    tokenizer = load_tokenizer(str(path))
    torch.manual_seed(0)
    core = build_model(config, 3)
    model = add_lora(core, config.lora_r, config.lora_alpha, config.lora_dropout, None)
    train_set = [{"input_ids": tokenizer(text)["input_ids"]} for text in CORPUS]
    return config, tokenizer, core, model, train_set


def test_mntp_teaches_the_unmasked_model_to_predict_masked_tokens_with_lora(causal_lm, tmp_path, capsys):
    config, tokenizer, core, model, train_set = mntp_setup(causal_lm, steps=40)
    collator = Collator(tokenizer.pad_token_id, tokenizer.padding_side)
    # A random tiny model's LM-head rows are ~0.02 in size, so its logits cannot move far from uniform
    # whatever the states; scaled up, the head can express a prediction and the loss can show learning.
    rows = 30 * output_embeddings(str(causal_lm), core.backbone)
    batch = collator(train_set)
    probe = mask_tokens(batch["input_ids"], batch["attention_mask"], 0.2, 1, torch.Generator().manual_seed(9))

    def probe_loss() -> float:
        model.eval()
        with torch.no_grad():
            return mntp_loss(core, rows, probe[0], batch["attention_mask"], probe[1]).item()

    frozen = {n: p.clone() for n, p in model.named_parameters() if "lora_" not in n}
    before = probe_loss()
    losses = adapt_with_mntp(model, rows, train_set, collator, config, 1, tmp_path / "log.jsonl", False)
    assert len(losses) == 40 and probe_loss() < 0.7 * before
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["mntp_step"] for r in records] == list(range(10, 41, 10))
    assert [r["mntp_loss"] for r in records] == [losses[s - 1] for s in range(10, 41, 10)]
    progress = capsys.readouterr().err  # the bar the main training process shows
    assert "MNTP: 100%" in progress and "40/40" in progress
    two_steps = dataclasses.replace(config, mntp_steps=2)
    adapt_with_mntp(model, rows, train_set, collator, two_steps, 1, None, False)
    assert "MNTP" not in capsys.readouterr().err  # other processes show none


def test_a_run_with_mntp_trains_logs_it_once_and_resumes_without_it(causal_lm, tmp_path):
    files = write_splits(tmp_path, ner_rows, {"train": 24, "dev": 8})
    config = lsllm.TrainConfig(
        model=str(causal_lm),
        task="token",
        train=str(files["train"]),
        dev=str(files["dev"]),
        output=str(tmp_path / "run"),
        attention="bidirectional",
        mntp_steps=6,
        logging_steps=3,
        epochs=2,
        batch_size=8,
        learning_rate=3e-3,
        precision="fp32",
    )
    result = lsllm.train(config)
    log = result.run_dir / "training_log.jsonl"

    def mntp_records() -> list[int]:
        return [r["mntp_step"] for r in map(json.loads, log.read_text().splitlines()) if "mntp_step" in r]

    assert mntp_records() == [3, 6]
    assert lsllm.TrainConfig.from_yaml(result.run_dir / "config.yaml").mntp_steps == 6
    again = lsllm.train(config, resume=True)  # from the last checkpoint, whose LoRA has been through MNTP
    assert mntp_records() == [3, 6] and again.metrics["dev"] == result.metrics["dev"]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"mntp_steps": 5, "attention": "causal"}, "use it with --attention bidirectional"),
        ({"mntp_steps": -1}, "--mntp-steps must be at least 0"),
        ({"mntp_steps": 5, "mntp_mask_ratio": 1.5}, "--mntp-mask-ratio between 0 and 1"),
    ],
)
def test_bad_mntp_options_are_refused_in_one_line(values, message):
    config = TrainConfig(model="m", task="token", train="t", dev="d", output="o", **values)
    with pytest.raises(LsllmError, match=message):
        config.validate()
