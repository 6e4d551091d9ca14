"""4- and 8-bit backbones (QLoRA): where they cannot run, one line says what is needed. Where bitsandbytes is
installed, a 4-bit run trains, predicts with LoRA kept apart, and its export folds LoRA into the weights
exactly as training computed with them. bench/gpu.sh runs this file on a GPU; without one, the tests borrow
bitsandbytes' CPU fallback, and without bitsandbytes (as in CI) they are skipped."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest
import torch
from peft import PeftModel

import lsllm
from lsllm.artifacts import RunFolder
from lsllm.cli import main
from lsllm.config import TrainConfig
from lsllm.data.examples import SequenceExample
from lsllm.errors import LsllmError
from lsllm.export import export_run
from lsllm.inference import Classifier
from lsllm.modeling import quantization
from tests.helpers import saved_run

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None
CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
TEXTS = ["the film was good", "what a boring plot", "Acme Corp opened an office"]


def quantized_run(model, folder, quantize: str = "4bit"):
    """A saved run (random LoRA weights, as trained ones) whose options say it trained with `quantize`."""
    run = saved_run(model, folder, "sequence", "causal")
    config = RunFolder(run).load_config()
    dataclasses.replace(config, quantize=quantize).save(run / "config.yaml")
    return run


def test_quantize_on_a_cpu_is_a_one_line_error(tiny_model, sentiment_files, tmp_path, capsys):
    if CUDA:
        pytest.skip("this machine has a GPU")
    splits = [f"--{split}={path}" for split, path in sentiment_files.items()]
    argv = [
        "train",
        "--model",
        str(tiny_model),
        "--task",
        "sequence",
        *splits,
        "--output",
        str(tmp_path / "r"),
    ]
    assert main([*argv, "--quantize", "4bit"]) == 2
    assert capsys.readouterr().err == (
        "lsllm: error: training with --quantize 4bit needs a CUDA GPU (lsllm runs bitsandbytes on CUDA only),"
        " not cpu\n"
    )
    assert not (tmp_path / "r").exists()


def test_a_quantized_run_on_a_cpu_says_to_export_it_on_a_gpu(tiny_model, tmp_path, capsys):
    if CUDA:
        pytest.skip("this machine has a GPU")
    run = quantized_run(tiny_model, tmp_path / "run", "8bit")
    assert main(["predict", str(run), "a text"]) == 2
    assert capsys.readouterr().err == (
        "lsllm: error: predicting with --quantize 8bit needs a CUDA GPU (lsllm runs bitsandbytes on CUDA"
        " only), not cpu; export the run on a GPU to predict anywhere\n"
    )
    assert main(["export", str(run), "--output", str(tmp_path / "export")]) == 2
    assert "exporting with --quantize 8bit needs a CUDA GPU" in capsys.readouterr().err


def test_without_bitsandbytes_the_error_names_the_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LsllmError) as error:
        quantization.check("4bit", torch.device("cuda"), "training")
    assert str(error.value) == (
        "training with --quantize 4bit needs bitsandbytes, which a plain install leaves out; install it with:"
        " pip install 'lsllm[qlora]'"
    )


def test_quantized_weights_compute_in_bf16_only():
    config = TrainConfig(model="m", task="sequence", train="t", dev="d", output="o", quantize="4bit")
    with pytest.raises(LsllmError, match="--quantize 4bit computes in bf16; leave out --precision fp32"):
        dataclasses.replace(config, precision="fp32").validate()


@pytest.fixture
def bitsandbytes_here(monkeypatch):
    """On a machine without a GPU, let lsllm use bitsandbytes' CPU fallback (where it is installed). On a
    CPU with AVX-512 BF16, bitsandbytes 0.50 repacks 4-bit weights for its own kernel at the first
    prediction, a layout that transformers' `dequantize` misreads; the tests keep the layout a GPU has."""
    if not HAS_BNB:
        pytest.skip("bitsandbytes is not installed (pip install 'lsllm[qlora]')")
    monkeypatch.setattr(quantization, "DEVICES", ("cuda", "cpu"))
    if not CUDA:
        from bitsandbytes.nn import modules

        monkeypatch.setattr(modules, "has_avx512bf16", lambda: False)


def logits(classifier: Classifier) -> torch.Tensor:
    features = classifier.data.encode([SequenceExample(t) for t in TEXTS], "texts", with_labels=False)
    return torch.stack(classifier.logits(features))


def test_qlora_loads_nf4_with_double_quantisation_computing_in_bf16(bitsandbytes_here, small_model, tmp_path):
    classifier = Classifier.load(quantized_run(small_model, tmp_path / "run"), device=DEVICE)
    backbone = classifier.model.backbone
    settings = backbone.config.quantization_config
    assert quantization.is_quantized(backbone) and isinstance(classifier.model, PeftModel)  # LoRA kept apart
    assert (settings.bnb_4bit_quant_type, settings.bnb_4bit_use_double_quant) == ("nf4", True)
    assert settings.bnb_4bit_compute_dtype == torch.bfloat16
    assert type(backbone.layers[0].self_attn.q_proj.base_layer).__name__ == "Linear4bit"


def test_an_export_of_a_4bit_run_folds_lora_into_the_weights_it_trained_with(
    bitsandbytes_here, small_model, tmp_path
):
    run = quantized_run(small_model, tmp_path / "run")
    as_run = logits(Classifier.load(run, device=DEVICE))
    export_run(run, tmp_path / "export", merge=True)
    exported = logits(Classifier.load(tmp_path / "export", device=DEVICE, precision="fp32"))
    # The original, unquantised base with the same LoRA: what an export that skipped dequantising gives.
    original = quantized_run(small_model, tmp_path / "original", "none")
    unquantised = logits(Classifier.load(original, device=DEVICE, precision="fp32"))
    error = (exported - as_run).abs().max()
    assert error < 0.05  # the run computes in bf16, the export in fp32
    assert error < (unquantised - as_run).abs().max() / 4


def test_a_4bit_run_trains_and_its_export_predicts_what_it_scored(
    bitsandbytes_here, small_model, sentiment_files, tmp_path
):
    result = lsllm.train(
        TrainConfig(
            model=str(small_model),
            task="sequence",
            **{split: str(path) for split, path in sentiment_files.items()},
            output=str(tmp_path / "run"),
            quantize="4bit",
            precision="bf16",
            epochs=2.0,
            learning_rate=3e-3,
            lora_r=4,
            max_length=32,
        )
    )
    saved = json.loads((result.run_dir / "adapter_model.safetensors").with_name("metrics.json").read_text())
    assert saved["test"] == result.metrics["test"]
    assert (
        Classifier.load(result.run_dir, device=DEVICE).evaluate(str(sentiment_files["test"])) == saved["test"]
    )
    export_run(result.run_dir, tmp_path / "export", merge=True)
    exported = Classifier.load(tmp_path / "export", device=DEVICE, precision="fp32")
    assert exported.evaluate(str(sentiment_files["test"]))["accuracy"] == saved["test"]["accuracy"]
