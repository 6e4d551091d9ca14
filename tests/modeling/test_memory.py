"""The memory planner: its counts agree with the model and peft, its activation estimate with what autograd
keeps for the backward pass, and a run that will not fit is told before loading which options would."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from transformers import AutoModel

from lsllm.cli import main
from lsllm.config import TrainConfig
from lsllm.modeling import memory
from lsllm.modeling.lora import add_lora
from lsllm.modeling.memory import ModelShape, Setup, estimate, kept_activations, ways_to_fit
from lsllm.modeling.model import build_model
from tests.helpers import write_jsonl


def test_the_shape_counts_every_weight_and_the_lora_weights_peft_adds(tiny_model):
    shape = ModelShape.from_pretrained(str(tiny_model))
    assert shape.weights == sum(p.numel() for p in AutoModel.from_pretrained(tiny_model).parameters())
    for targets in (None, ["q_proj", "v_proj"]):
        config = TrainConfig(model=str(tiny_model), task="sequence")
        model = add_lora(build_model(config, 2), 4, 8, 0.0, targets)
        added = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
        assert shape.lora_weights(4, targets) == added


def saved_bytes(model, batch) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one forward pass, weights excluded."""
    kept: dict[int, int] = {}

    def pack(tensor):
        kept[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(**batch)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(size for pointer, size in kept.items() if pointer not in weights)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("targets", [None, ["q_proj", "v_proj"]], ids=["all-linear", "q-v"])
def test_the_activation_estimate_is_what_autograd_keeps(small_model, attention, dropout, targets):
    batch, length = 4, 96
    config = TrainConfig(
        model=str(small_model),
        task="sequence",
        batch_size=batch,
        attn_implementation=attention,
        lora_dropout=dropout,
        lora_targets=targets,
    )
    torch.manual_seed(0)
    model = add_lora(build_model(config, 2), 8, 16, dropout, targets).train()
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, -1] = 0  # padding, as in most batches: attention then runs under a mask
    inputs = {
        "input_ids": torch.randint(3, 300, (batch, length)),
        "attention_mask": mask,
        "labels": torch.zeros(batch, dtype=torch.long),
    }
    planned = kept_activations(
        ModelShape.from_pretrained(str(small_model)), Setup.for_run(config, "fp32", length, 2)
    )
    assert saved_bytes(model, inputs) == pytest.approx(planned, rel=0.12)


def test_the_ways_to_fit_fit_and_keep_the_global_batch(small_model):
    shape = ModelShape.from_pretrained(str(small_model))
    setup = Setup(batch_size=64, length=512, precision="fp32", grad_accum=2)
    checkpointed = dataclasses.replace(setup, gradient_checkpointing=True)
    halved = dataclasses.replace(setup, batch_size=32, grad_accum=4)  # 32 x 4 = 64 x 2
    available = 1.01 * max(estimate(shape, checkpointed).total, estimate(shape, halved).total)
    assert estimate(shape, setup).total > available
    assert ways_to_fit(shape, setup, available) == [
        f"--gradient-checkpointing (about {memory.gib(estimate(shape, checkpointed).total)} GiB)",
        f"--batch-size 32 --grad-accum 4 (about {memory.gib(estimate(shape, halved).total)} GiB)",
    ]


def test_sharding_divides_what_it_shards(small_model):
    shape = ModelShape.from_pretrained(str(small_model))
    alone = estimate(shape, Setup(batch_size=1, length=16, precision="bf16", device="cuda"))
    fsdp = estimate(
        shape, Setup(batch_size=1, length=16, precision="bf16", device="cuda", processes=4, engine="fsdp")
    )
    two_layers = 2 * 2 * shape.linear_weights / shape.layers
    assert fsdp.weights == pytest.approx(alone.weights / 4 + two_layers, rel=1e-6)
    assert fsdp.trainable < alone.trainable / 3
    nf4 = estimate(shape, Setup(batch_size=1, length=16, precision="bf16", device="cuda", quantize="4bit"))
    assert nf4.weights - shape.other_weights * 2 == pytest.approx(shape.linear_weights * 0.516, rel=1e-3)


def test_training_logs_the_estimate_and_warns_with_what_would_fit(small_model, tmp_path, caplog, monkeypatch):
    rows = [{"text": "the film was good and the acting was great " * 12, "label": "pos"}] * 8
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    config = TrainConfig(
        model=str(small_model),
        task="sequence",
        train=str(data),
        dev=str(data),
        output=str(tmp_path / "run"),
        precision="fp32",
        epochs=1.0,
        batch_size=8,
        max_length=64,  # every text is cut to 64 tokens
    )
    shape = ModelShape.from_pretrained(str(small_model))
    setup = Setup.for_run(config, "fp32", 64, num_labels=1)
    needed = estimate(shape, setup).total
    checkpointed = estimate(shape, dataclasses.replace(setup, gradient_checkpointing=True)).total
    available = (needed + checkpointed) / 2
    monkeypatch.setattr("lsllm.training.available_memory", lambda device, processes: available)
    caplog.set_level(logging.INFO, logger="lsllm")  # whatever an earlier test (the readers' fuzzer) set
    from lsllm.training import train

    train(config)
    assert f"memory: about {estimate(shape, setup).describe()} per process" in caplog.text
    warning = next(r.getMessage() for r in caplog.records if "may run out of memory" in r.getMessage())
    assert warning.startswith(
        f"training may run out of memory: it needs about {memory.gib(needed)} GiB per process, and"
        f" {memory.gib(available)} GiB are available to each; it would fit with --gradient-checkpointing"
    )


def test_plan_prints_the_estimate_against_the_memory_given(small_model, capsys):
    argv = [
        "plan",
        "--model",
        str(small_model),
        "--batch-size",
        "64",
        "--max-length",
        "512",
        "--precision",
        "fp32",
    ]
    assert main([*argv, "--memory-gib", "1.0"]) == 0
    shown = capsys.readouterr().out
    setup = Setup(batch_size=64, length=512, precision="fp32")
    total = estimate(ModelShape.from_pretrained(str(small_model)), setup).total
    assert f"total                    {memory.gib(total)} GiB per process" in shown
    assert "available                1.0 GiB per process: does not fit" in shown
    fixes = ways_to_fit(ModelShape.from_pretrained(str(small_model)), setup, 1.0 * memory.GiB)
    assert shown.endswith(f"1.0 GiB are available to each; it would fit with {'; or '.join(fixes)}\n")
    assert fixes
    assert main([*argv, "--memory-gib", "64"]) == 0
    assert "64.0 GiB per process: fits" in capsys.readouterr().out


def test_plan_for_a_gpu_this_machine_lacks_needs_its_memory(small_model, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["plan", "--model", str(small_model), "--device", "cuda"]) == 2
    error = capsys.readouterr().err
    assert (
        error
        == "lsllm: error: this machine has no GPU to measure; give the memory of yours with --memory-gib\n"
    )
