"""Training in several processes (torchrun, accelerate launch): which engine runs, which process writes,
and waiting for the others.

Every process runs the same `lsllm train`: they read the same data, train in step on their own share of
each batch, and only the main process (rank 0) writes the run folder. With one process every call here
costs nothing. The engine comes from the launcher's environment, which `accelerate launch` fills in from
its config file (examples/accelerate/*.yaml).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import TypeVar

from lsllm.errors import LsllmError

T = TypeVar("T")

DDP_ON_CPU = "on CPUs launch plain DDP instead: torchrun --nproc_per_node N -m lsllm train ..."
# How long the other processes wait for the main one to score the saved run alone (a large test set on a
# large model can take hours; the process group's own timeout is 30 minutes).
SCORING_WAIT = datetime.timedelta(days=7)


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() == "true"


def rank() -> int:
    """This process's rank as the launcher set it (0 when not launched by torchrun or accelerate)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes the launcher started (1 when not launched by one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world_size() -> int:
    """How many of the processes run on this machine."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def engine() -> str:
    """The training engine the launch asks for: fsdp, zero2 or zero3 (DeepSpeed; accelerate's default
    stage is 2), ddp (several processes) or single."""
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        return "zero" + os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    if _flag("ACCELERATE_USE_FSDP"):
        return "fsdp"
    return "ddp" if world_size() > 1 else "single"


def check_engine(cuda: bool, precision: str) -> str:
    """The engine (as `engine` names it), once its settings are known to work with lsllm here; a one-line
    error otherwise.

    accelerate 1.15 applies FSDP and DeepSpeed to GPU processes only: on CPUs it would silently train
    unsharded copies, so lsllm refuses instead. lsllm saves the adapter and the head whole, so FSDP must
    gather a full state dict (FSDP2, FULL_STATE_DICT) and ZeRO-3 must gather 16-bit weights on save; every
    process loads the backbone itself (no loading on rank 0 only). The number format is lsllm's
    `precision` (fp32 or bf16): a launcher's different mixed precision would silently override it.
    """
    kind = engine()
    fsdp_example = "(see examples/accelerate/fsdp2.yaml)"
    if kind == "fsdp":
        if os.environ.get("FSDP_VERSION", "1") != "2":
            raise LsllmError(f"lsllm trains with FSDP2 only; set fsdp_version: 2 {fsdp_example}")
        if os.environ.get("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT") != "FULL_STATE_DICT":
            raise LsllmError(
                "FSDP must save a full state dict for lsllm to write the adapter and head whole; set"
                f" fsdp_state_dict_type: FULL_STATE_DICT {fsdp_example}"
            )
        if _flag("FSDP_CPU_RAM_EFFICIENT_LOADING"):
            raise LsllmError(
                "lsllm loads the backbone in every process; set fsdp_cpu_ram_efficient_loading: false"
                f" {fsdp_example}"
            )
    launcher_precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launcher_precision not in ("no", precision):
        raise LsllmError(
            f"the launcher asks for mixed precision {launcher_precision} but lsllm trains in {precision};"
            " set mixed_precision: no in the accelerate config (or leave out --mixed_precision) and choose"
            " with lsllm's --precision"
        )
    if kind == "zero3" and not _flag("ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"):
        raise LsllmError(
            "DeepSpeed ZeRO-3 must gather the weights on save for lsllm to write the adapter and head whole;"
            " set zero3_save_16bit_model: true (see examples/accelerate/deepspeed-zero3.yaml)"
        )
    if kind not in ("single", "ddp") and not cuda:
        name = "FSDP" if kind == "fsdp" else "DeepSpeed"
        raise LsllmError(f"{name} runs on CUDA GPUs only and this machine has none; {DDP_ON_CPU}")
    return kind


def _state():
    import torch
    from accelerate import PartialState

    # The same choice transformers' TrainingArguments makes (use_cpu), so both see one process group.
    return PartialState(cpu=not torch.cuda.is_available())


def start() -> None:
    """Join the launch's process group (gloo on CPU, NCCL on GPUs); nothing for a single process."""
    _state()


def is_main() -> bool:
    """Whether this is the process that writes files and prints (rank 0), or the only one."""
    return rank() == 0


def wait_for_everyone() -> None:
    _state().wait_for_everyone()


def main_first():
    """A context in which the main process goes first and the others follow once it is done."""
    return _state().main_process_first()


def on_main(compute: Callable[[], T]) -> T:
    """Run `compute` in the main process only and give its result to every process; the others wait as
    long as it takes, on a gloo group of their own without the process group's 30-minute timeout."""
    state = _state()
    if state.num_processes == 1:
        return compute()
    import torch.distributed as dist

    group = dist.new_group(backend="gloo", timeout=SCORING_WAIT)
    box = [compute() if state.is_main_process else None]
    dist.broadcast_object_list(box, src=0, group=group)
    dist.destroy_process_group(group)
    return box[0]


def finish() -> None:
    """Leave the process group, as torch asks before a process ends; nothing for a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
