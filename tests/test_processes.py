"""Training in several processes: `torchrun -m lsllm train` on CPU (gloo) trains what one process trains
with the same global batch, only the main process writes, a killed launch resumes to the uninterrupted
result, and the engines that need GPUs (FSDP, DeepSpeed) are refused on CPU in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from lsllm import processes
from lsllm.checkpoints import MANIFEST, checkpoints
from lsllm.cli import main
from lsllm.config import TrainConfig
from lsllm.data.encoding import Encoder
from lsllm.data.task import TaskData, label_map_for, read_examples
from lsllm.errors import LsllmError
from lsllm.modeling.backbone import load_tokenizer
from tests.helpers import sentiment_rows, write_splits

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "accelerate"

# 32 examples, a global batch of 8: 4 steps an epoch, 2 epochs, a checkpoint every 3 steps. 13 dev examples
# do not split evenly over 2 processes, so the evaluation must drop the filler the sampler adds. No LoRA
# dropout: each process draws its own masks, one process draws them all.
OPTIONS = {
    "--precision": "fp32",
    "--epochs": "2",
    "--eval-steps": "3",
    "--learning-rate": "3e-3",
    "--lora-r": "4",
    "--lora-dropout": "0",
    "--max-length": "32",
    "--logging-steps": "1",
}

# Runs `lsllm train` under torchrun; the main process kills itself (SIGKILL) after its Nth training step,
# and torchrun then stops the other one.
KILLED = """
import os, signal, sys
import transformers
from lsllm.cli import main

at, argv = int(sys.argv[1]), sys.argv[2:]
original_step = transformers.Trainer.training_step
calls = 0

def training_step(self, *args, **kwargs):
    global calls
    loss = original_step(self, *args, **kwargs)
    calls += 1
    if calls == at and os.environ["RANK"] == "0":
        os.kill(os.getpid(), signal.SIGKILL)
    return loss

transformers.Trainer.training_step = training_step
sys.exit(main(argv))
"""


def train_argv(model, files: dict, output: Path, batch_size: int) -> list[str]:
    splits = [arg for split, path in files.items() for arg in (f"--{split}", str(path))]
    options = [arg for pair in OPTIONS.items() for arg in pair]
    return [
        "train",
        "--model",
        str(model),
        "--task",
        "sequence",
        *splits,
        "--output",
        str(output),
        "--batch-size",
        str(batch_size),
        *options,
    ]


def torchrun(*program: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Two processes on this CPU, as a user launches them: python -m torch.distributed.run (torchrun)."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *program],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=600,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_splits(tmp_path_factory.mktemp("data"), sentiment_rows, {"train": 32, "dev": 13, "test": 12})


@pytest.fixture(scope="module")
def one_process(tiny_model, data, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("one") / "run"
    assert main(train_argv(tiny_model, data, output, batch_size=8)) == 0
    return output


@pytest.fixture(scope="module")
def two_processes(tiny_model, data, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    output = tmp_path_factory.mktemp("two") / "run"
    launched = torchrun("-m", "lsllm", *train_argv(tiny_model, data, output, batch_size=4))
    assert launched.returncode == 0, launched.stderr[-3000:]
    return output, launched


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "training_log.jsonl").read_text().splitlines()]


def outcome(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "dev": metrics["dev"],
        "test": metrics["test"],
        "best": Path(metrics["best_checkpoint"]).name,
        "steps": [r["step"] for r in records(run)],
        "evaluations": [r["eval_accuracy"] for r in records(run) if "eval_accuracy" in r],
    }


def test_two_processes_train_what_one_process_trains_with_the_same_global_batch(one_process, two_processes):
    run, _ = two_processes
    assert outcome(run) == outcome(one_process)
    one_losses = [r["loss"] for r in records(one_process) if "loss" in r]
    assert [r["loss"] for r in records(run) if "loss" in r] == pytest.approx(one_losses, abs=1e-5)
    one = load_file(one_process / "adapter_model.safetensors")
    two = load_file(run / "adapter_model.safetensors")
    assert one.keys() == two.keys()
    assert any(name.startswith("base_model.model.head.") for name in two)  # the trained head is saved too
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6)


def test_only_the_main_process_writes_and_prints(two_processes):
    run, launched = two_processes
    steps = [r["step"] for r in records(run) if "loss" in r]
    assert steps == list(range(1, 9))  # one record per step: the second process logged nothing
    assert launched.stdout.count("run saved to") == 1 and launched.stdout.count("== test ==") == 1
    for checkpoint in checkpoints(run / "checkpoints"):
        recorded = json.loads((checkpoint / MANIFEST).read_text())["files"]
        assert {"rng_state_0.pth", "rng_state_1.pth"} <= recorded.keys()  # both processes' random states
    leftovers = [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_two_processes_killed_and_resumed_end_where_an_uninterrupted_run_ends(
    tiny_model, data, two_processes, tmp_path
):
    output = tmp_path / "run"
    argv = train_argv(tiny_model, data, output, batch_size=4)
    killed = torchrun(str(write_script(tmp_path, KILLED)), "5", *argv)
    assert killed.returncode != 0 and not (output / "metrics.json").exists()
    assert [c.name for c in checkpoints(output / "checkpoints")] == ["checkpoint-3"]
    resumed = torchrun("-m", "lsllm", *argv, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference, _ = two_processes
    assert outcome(output) == outcome(reference)
    expected = load_file(reference / "adapter_model.safetensors")
    for name, value in load_file(output / "adapter_model.safetensors").items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-7)


def write_script(folder: Path, text: str, name: str = "killed.py") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# Runs `lsllm train` under torchrun; each process writes the examples (token ids without padding) of every
# batch it trains on to seen-RANK.jsonl.
RECORDED = """
import json, os, sys
import transformers
from lsllm.cli import main

original_step = transformers.Trainer.training_step

def training_step(self, model, inputs, *args, **kwargs):
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
    with open(f"seen-{os.environ['RANK']}.jsonl", "a") as handle:
        handle.write(json.dumps({"epoch": self.state.epoch, "rows": rows}) + "\\n")
    return original_step(self, model, inputs, *args, **kwargs)

transformers.Trainer.training_step = training_step
sys.exit(main(sys.argv[1:]))
"""


def test_with_length_grouping_each_process_trains_its_own_share_of_every_epoch(tiny_model, data, tmp_path):
    """Length grouping draws its order from a generator that accelerate keeps equal in every process, so
    the processes split each epoch between them: every example once, none twice."""
    argv = [*train_argv(tiny_model, data, tmp_path / "run", batch_size=4), "--group-by-length"]
    launched = torchrun(str(write_script(tmp_path, RECORDED, "recorded.py")), *argv, cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr[-3000:]
    config = TrainConfig(model=str(tiny_model), task="sequence", max_length=32)
    examples = read_examples(config, str(data["train"]))
    encoder = Encoder.for_config(load_tokenizer(str(tiny_model)), config)
    features = TaskData(config, label_map_for(config, examples), encoder).encode(examples, "train")
    expected = sorted(feature["input_ids"] for feature in features)
    records = [(tmp_path / f"seen-{rank}.jsonl").read_text().splitlines() for rank in (0, 1)]
    steps = [json.loads(line) for lines in records for line in lines]
    assert len(steps) == 16  # 2 processes x 4 steps x 2 epochs
    for epoch in (0, 1):
        seen = [row for step in steps if epoch <= step["epoch"] < epoch + 1 for row in step["rows"]]
        assert sorted(seen) == expected


# Runs `lsllm train` under torchrun on a faked CPU with bf16 units whose bf16 is slow as the main process
# times it and fast as the other one does; each process writes the number format of every training step
# it takes (autocast, and the frozen backbone's weights) to format-RANK.txt.
SPLIT_PROBE = """
import os, sys
import transformers
from lsllm import _compat
from lsllm.cli import main
from lsllm.modeling import precision

rank = os.environ["RANK"]
_compat.cpu_bf16_units = lambda: True
precision.cpu_bf16_speedup = lambda: {"0": 0.5, "1": 4.4}[rank]
original_step = transformers.Trainer.training_step

def training_step(self, model, *args, **kwargs):
    frozen = sorted({str(p.dtype) for p in model.parameters() if not p.requires_grad})
    with open(f"format-{rank}.txt", "a") as handle:
        handle.write(f"bf16={self.args.bf16} backbone={','.join(frozen)}\\n")
    return original_step(self, model, *args, **kwargs)

transformers.Trainer.training_step = training_step
sys.exit(main(sys.argv[1:]))
"""


def test_processes_whose_cpus_time_bf16_apart_train_in_the_main_process_number_format(
    tiny_model, data, tmp_path
):
    argv = train_argv(tiny_model, data, tmp_path / "run", batch_size=4)
    argv[argv.index("--precision") + 1] = "auto"
    launched = torchrun(str(write_script(tmp_path, SPLIT_PROBE, "split.py")), *argv, cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr[-3000:]
    formats = [set((tmp_path / f"format-{rank}.txt").read_text().splitlines()) for rank in (0, 1)]
    assert formats == [{"bf16=False backbone=torch.float32"}] * 2
    assert "ran a matmul at 0.5x fp32's speed" in launched.stderr


def test_fsdp_launched_on_cpu_is_refused_in_one_line(tiny_model, data, tmp_path):
    """accelerate would quietly train unsharded copies on CPUs; the example config passes every other check
    lsllm makes, so the refusal is the one about the hardware."""
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(EXAMPLES / "fsdp2.yaml"),
            "-m",
            "lsllm",
            *train_argv(tiny_model, data, tmp_path / "run", batch_size=4),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert launched.returncode != 0
    expected = (
        "lsllm: error: FSDP runs on CUDA GPUs only and this machine has none; on CPUs launch plain DDP"
        " instead: torchrun --nproc_per_node N -m lsllm train ..."
    )
    assert expected in launched.stderr.splitlines()
    assert not (tmp_path / "run" / "config.yaml").exists()


FSDP2 = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT"}
ZERO3 = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}


@pytest.mark.parametrize(
    ("env", "cuda", "message"),
    [
        ({**ZERO3, "ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL": "true"}, False, "DeepSpeed runs on CUDA"),
        ({**FSDP2, "FSDP_VERSION": "1"}, True, "set fsdp_version: 2"),
        ({**FSDP2, "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT"}, True, "fsdp_state_dict_type: FULL_STATE"),
        ({**FSDP2, "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"}, True, "fsdp_cpu_ram_efficient_loading: false"),
        (ZERO3, True, "set zero3_save_16bit_model: true"),
        ({"ACCELERATE_MIXED_PRECISION": "fp16"}, True, "mixed precision fp16 but lsllm trains in bf16"),
    ],
    ids=["deepspeed-on-cpu", "fsdp1", "sharded-state-dict", "rank0-loading", "zero3-no-gather", "fp16"],
)
def test_engine_settings_lsllm_cannot_work_with_are_one_line_errors(monkeypatch, env, cuda, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(LsllmError, match=message) as error:
        processes.check_engine(cuda=cuda, precision="bf16")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["ddp", "fsdp2", "deepspeed-zero2", "deepspeed-zero3"])
def test_example_accelerate_configs_leave_the_number_format_to_lsllm(name):
    config = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    assert config["mixed_precision"] == "no" and config["use_cpu"] is False
    if name == "fsdp2":
        assert config["fsdp_config"]["fsdp_version"] == 2
        assert config["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    if name == "deepspeed-zero3":
        assert config["deepspeed_config"]["zero3_save_16bit_model"] is True


def test_the_engine_follows_the_launchers_environment(monkeypatch):
    assert processes.engine() == "single"
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert processes.engine() == "ddp"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert processes.engine() == "fsdp"
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert processes.engine() == "zero2"  # accelerate's default stage
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    assert processes.engine() == "zero3"
