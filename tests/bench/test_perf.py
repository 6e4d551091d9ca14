"""bench.perf's FLOP count from a model's shapes, and its report: ratios lsllm / baseline, table, plot."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.flops import Shapes
from bench.perf_report import DASH, ratios, render, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMOLLM2 = SimpleNamespace(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
)
ENVIRONMENT = {"versions": {"torch": "2.13.0"}, "hardware": {"cpu": "Test CPU", "cores": 2}}
SHAPES = Shapes.from_config(SMOLLM2).to_dict()
META = {
    "command": "python -m bench.perf",
    "started": "2026-11-21T10:00:00",
    "finished": "2026-11-21T10:20:00",
    "model": "smollm2-135m",
    "train_examples": 256,
    "dev_examples": 16,
    "predict_examples": 256,
    "batch_sizes": [1, 64],
    "epochs": 1,
    "settings": {
        "batch_size": 16,
        "learning_rate": 5e-4,
        "lora_r": 12,
        "lora_alpha": 32.0,
        "lora_dropout": 0.1,
    },
    "seed": 0,
    "scale": 1.0,
    "working_tree_dirty": False,
    "failed": [],
}


def test_linear_flops_are_twice_the_weights_of_the_blocks():
    # SmolLM2-135M holds 106,168,320 weights in its 30 blocks' linear layers (134.5M with the embedding).
    assert Shapes.from_config(SMOLLM2).linear_per_token() == 2 * 106_168_320


def test_training_counts_input_gradients_only_for_frozen_weights():
    shapes = Shapes.from_config(SMOLLM2)
    lengths = [20, 40]
    without_lora = shapes.training(lengths, lora_r=0)
    attention = sum(n * shapes.attention_per_token(n) for n in lengths)
    assert without_lora == 2 * shapes.forward(lengths) + attention
    assert shapes.training(lengths, lora_r=12) - without_lora == 3 * 60 * shapes.lora_per_token(12)


def test_head_dim_and_kv_heads_default_like_transformers():
    config = SimpleNamespace(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4
    )
    shapes = Shapes.from_config(config)
    assert (shapes.head_dim, shapes.kv_heads) == (16, 4)


def train_record(system: str, tokens_per_second: float, memory: float) -> dict:
    return {
        "part": "train",
        "task": "sst2",
        "mode": "causal",
        "system": system,
        "precision": "fp32",
        "examples_per_second": tokens_per_second / 10,
        "tokens_per_second": tokens_per_second,
        "train_runtime": 2560 / tokens_per_second,
        "eval_seconds": 1.0,
        "peak_rss_mb": memory,
        "peak_gpu_mb": None,
        "flops": 1e12,
        "flop_seconds": 2560 / tokens_per_second - 1.0,
        "notes": [],
        "shapes": SHAPES,
        **ENVIRONMENT,
    }


def predict_record(system: str, examples_per_second: float, precision: str = "fp32", memory=900.0) -> dict:
    batches = [
        {
            "batch_size": size,
            "calls": 256 // size,
            "seconds": 256 / examples_per_second,
            "examples_per_second": examples_per_second,
            "p50_ms": 1000 * size / examples_per_second,
            "p99_ms": 2000 * size / examples_per_second,
            "max_ms": 2000 * size / examples_per_second,
        }
        for size in (1, 64)
    ]
    return {
        "part": "predict",
        "task": "conll2003",
        "mode": "bidirectional",
        "system": system,
        "precision": precision,
        "flops": 5e11,
        "batches": batches,
        "peak_rss_mb": memory,
        "notes": [],
        "shapes": SHAPES,
        **ENVIRONMENT,
    }


PEAK = {
    "part": "flops",
    "bf16_native": False,
    "peaks": [
        {
            "dtype": "fp32",
            "device": "cpu",
            "shape": [1024, 576, 1536],
            "threads": 2,
            "flops_per_second": 1e11,
        },
        {"dtype": "bf16", "device": "cpu", "shape": [64, 576, 1536], "threads": 2, "flops_per_second": 1e9},
    ],
    "shapes": SHAPES,
    **ENVIRONMENT,
}
RECORDS = [
    PEAK,
    train_record("lsllm", 1500.0, 1800.0),
    train_record("baseline", 1000.0, 2000.0),
    predict_record("lsllm", 40.0),
    predict_record("lsllm-int8", 50.0, "int8", memory=720.0),
    predict_record("baseline", 20.0),
]


def test_ratios_are_lsllm_over_baseline_with_the_targets():
    found = {row.measurement: row for row in ratios(RECORDS)}
    assert found["train SST-2 causal: real tokens/s"].ratio == 1.5
    assert found["train SST-2 causal: real tokens/s"].target == 1.5
    assert found["train SST-2 causal: peak RSS (MB)"].ratio == 0.9
    assert found["predict CoNLL-2003 batch 64: examples/s"].ratio == 2.0
    assert found["predict CoNLL-2003 batch 1: p50 latency (ms)"].ratio == 0.5
    assert found["predict CoNLL-2003 batch 1: p50 latency (ms)"].better == "lower"
    assert found["predict CoNLL-2003: peak RSS (MB)"].ratio == 1.0
    assert found["predict CoNLL-2003 batch 1 int8: examples/s"].ratio == 2.5
    assert found["predict CoNLL-2003 int8: peak RSS (MB)"].ratio == 0.8


def test_every_task_gets_its_ratios():
    on_sst2 = [{**r, "task": "sst2"} for r in RECORDS if r["part"] == "predict"]
    on_conll = [{**r, "task": "conll2003"} for r in RECORDS if r["part"] == "train"]
    found = {row.measurement for row in ratios([*RECORDS, *on_sst2, *on_conll])}
    for task in ("SST-2", "CoNLL-2003"):
        assert f"train {task} causal: real tokens/s" in found
        assert f"predict {task} batch 1: examples/s" in found
        assert f"predict {task} batch 1 int8: examples/s" in found


def test_prediction_table_compares_each_lsllm_variant_with_the_pipeline():
    table = render(RECORDS, META)
    # 256 examples in 6.4 s give 5e11 / 6.4 FLOP/s, 78% of the fp32 peak; no int8 peak is measured.
    assert "| CoNLL-2003 | 1 | lsllm | 40.0 | 25.0 | 50.0 | 50.0 | 78.1 GFLOP/s | 78.1% | 900 |" in table
    int8 = "| CoNLL-2003 | 1 | lsllm --precision int8 | 50.0 | 20.0 | 40.0 | 40.0 | 97.7 GFLOP/s | {} | 720 |"
    assert int8.format(DASH) in table
    assert "|  |  | lsllm --precision int8 / baseline | **2.50x** | **0.40x** |" in table
    assert "|  |  | lsllm / baseline | **2.00x** | **0.50x** |" in table


def test_report_files(tmp_path):
    written = write_report(tmp_path, RECORDS, META)
    assert [path.name for path in written] == ["table.md", "results.json", "perf.png"]
    table = (tmp_path / "table.md").read_text(encoding="utf-8")
    assert "| train SST-2 causal: real tokens/s | 1,500.00 | 1,000.00 | **1.50x** | higher | 1.5x |" in table
    assert "bf16 (emulated: no bf16 units on this CPU)" in table
    assert "python -m bench.perf" in table
    combined = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert len(combined["records"]) == 6 and combined["meta"]["train_examples"] == 256
    assert (tmp_path / "perf.png").read_bytes().startswith(PNG_SIGNATURE)


def test_a_measurement_without_its_baseline_is_left_out():
    table = render([PEAK, train_record("lsllm", 1500.0, 1800.0)], META)
    assert "## Training" not in table and "## Prediction" not in table
    assert "## FLOP counting and the matmul peak" in table


def runtime_record(system: str, precision: str, per_second: dict[int, float], probs: list) -> dict:
    batches = [
        {"batch_size": size, "examples_per_second": speed, "p50_ms": 1000 / speed, "p99_ms": 2000 / speed}
        for size, speed in per_second.items()
    ]
    return {
        "part": "runtime",
        "task": "sst2",
        "system": system,
        "precision": precision,
        "examples": len(probs),
        "batches": batches,
        "probs": probs,
        "peak_rss_mb": 900.0,
        "model_mb": None if system.startswith("torch") else 500.0,
        "shapes": SHAPES,
        **ENVIRONMENT,
    }


def test_the_runtime_table_puts_each_system_against_torch_fp32_on_the_same_inputs():
    reference = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]
    int8 = [[0.85, 0.15], [0.2, 0.8], [0.45, 0.55], [0.3, 0.7]]  # one label flips, largest change 0.15
    records = [
        runtime_record("torch-fp32", "fp32", {1: 10.0, 64: 20.0}, reference),
        runtime_record("onnx-fp32", "fp32", {1: 25.0, 64: 30.0}, reference),
        runtime_record("onnx-int8", "int8", {1: 40.0, 64: 10.0}, int8),
    ]
    table = render(records, META)
    assert "## Runtimes: torch and onnxruntime" in table
    assert "| 1 | onnx-fp32 | 25.0 | 40.0 | 80.0 | **2.50x** | 100.0% | 0.0000 | 900 | 500 |" in table
    assert "| 64 | onnx-int8 | 10.0 | 100.0 | 200.0 | **0.50x** | 75.0% | 0.1500 | 900 | 500 |" in table
    assert f"| 64 | torch-fp32 | 20.0 | 50.0 | 100.0 | **1.00x** | 100.0% | 0.0000 | 900 | {DASH} |" in table


H100 = {**ENVIRONMENT, "hardware": {"cpu": "Test CPU", "cores": 16, "gpu": "NVIDIA H100 80GB HBM3"}}


def gpu_train_record(system: str, quantize: str, tokens_per_second: float, **extra) -> dict:
    record = {**train_record(system, tokens_per_second, 1000.0), **H100, "peak_gpu_mb": 9000.0}
    seconds = 25_600 / tokens_per_second
    return {
        **record,
        "quantize": quantize,
        "params": 1_235_814_400,
        "real_tokens": 25_600,
        "train_runtime": seconds + 1.0,
        "flop_seconds": seconds,
        **extra,
    }


def test_mfu_counts_lora_training_as_four_flops_per_weight_against_the_datasheet():
    records = [
        gpu_train_record("lsllm", "none", 40_000.0),
        gpu_train_record("baseline", "none", 20_000.0),
        gpu_train_record("lsllm", "4bit", 30_000.0),
        gpu_train_record("baseline", "4bit", 10_000.0),
    ]
    table = render(records, META)
    # 40,000 tokens/s x 4 x 1,235,814,400 weights = 197.7 TFLOP/s of the H100's 989: 20.0%.
    assert "| SST-2 | causal | lsllm |" in table and "| 20.0% |" in table
    assert "| SST-2 | causal 4bit | baseline (HF + peft + Trainer) |" in table and "| 5.0% |" in table
    assert "as NeMo counts it) over the NVIDIA H100 80GB HBM3's dense bf16 peak from its datasheet" in table
    found = {row.measurement: row for row in ratios(records)}
    assert found["train SST-2 causal 4bit: real tokens/s"].ratio == 3.0
    assert found["train SST-2 causal: peak GPU memory (MB)"].ratio == 1.0


def test_several_gpus_are_compared_with_one():
    records = [
        gpu_train_record("lsllm", "none", 40_000.0),
        gpu_train_record("baseline", "none", 20_000.0),
        gpu_train_record("lsllm", "none", 72_000.0, part="ddp", gpus=2),
    ]
    table = render(records, META)
    assert "## Several GPUs (DDP)" in table
    assert "| SST-2 causal | 2 | 72,000.0 | 40,000.0 | 1.80x | 90.0% |" in table


def test_the_random_configs_have_the_llama_models_shapes():
    """Llama 3.2 1B and 3B and Llama 3.1 8B without their language-model head (8B's is not tied)."""
    from transformers import AutoConfig

    from bench.perf import _random_config_values
    from lsllm.modeling.memory import ModelShape

    counts = {}
    for name in ("llama-1b", "llama-3b", "llama-8b"):
        values = dict(_random_config_values(name))
        counts[name] = ModelShape.from_config(
            AutoConfig.for_model(values.pop("model_type"), **values)
        ).weights
    assert counts == {"llama-1b": 1_235_814_400, "llama-3b": 3_212_749_824, "llama-8b": 7_504_924_672}


def test_the_gpu_run_measures_both_systems_with_and_without_4bit_and_ddp_once():
    from bench.perf import jobs, parse_args

    argv = ["--random-config", "llama-1b", "--only", "train", "flops", "--tasks", "sst2", "--modes", "causal"]
    todo = jobs(parse_args([*argv, "--quantize", "none", "4bit", "--ddp", "2"]))
    assert todo == [
        ["setup"],
        ["peak"],
        ["train", "sst2", "causal", "lsllm", "none"],
        ["train", "sst2", "causal", "baseline", "none"],
        ["train", "sst2", "causal", "lsllm", "4bit"],
        ["train", "sst2", "causal", "baseline", "4bit"],
        ["ddp", "sst2", "causal", "none", "2"],
    ]


def test_the_gpu_script_says_what_it_needs_on_a_machine_without_one():
    import subprocess

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    script = Path(__file__).resolve().parents[2] / "bench" / "gpu.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "bench/gpu.sh: needs a CUDA GPU, and this machine has none"
