"""Pick the number format: bf16 where the hardware runs it fast, fp32 elsewhere; int8 on request."""

from __future__ import annotations

import logging
import time
from functools import cache
from pathlib import Path

import torch
from torch import nn

from lsllm import _compat
from lsllm.errors import LsllmError

logger = logging.getLogger(__name__)

# CPU flags (Linux /proc/cpuinfo) of the units that run bf16 matmuls natively.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# How much faster than fp32 a CPU's bf16 matmul must be for auto to train and predict in bf16. The flags
# are not enough: on a 2-core AMD EPYC with AVX-512 BF16, bf16 matmuls ran 4.4x as fast and training steps
# 1.8x; on a 2-core Intel Xeon with AVX-512 BF16 but no AMX, 0.5x and 0.7x (bench/results/precision*).
BF16_MIN_CPU_SPEEDUP = 1.5


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them; empty where /proc/cpuinfo does not exist."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def cpu_has_bf16_units() -> bool:
    """AVX-512 BF16 or AMX: torch's own probe if it still has one, else the flags Linux reports."""
    native = _compat.cpu_bf16_units()
    return native if native is not None else bool(cpu_flags() & set(BF16_CPU_FLAGS))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_is_fast(device: torch.device) -> tuple[bool, str]:
    """Whether bf16 pays off on `device`, and why: on GPUs that support it, and on CPUs whose bf16 units
    run a matmul at least BF16_MIN_CPU_SPEEDUP times as fast as fp32.

    Elsewhere (AVX2, plain AVX-512) PyTorch emulates bf16 matmuls, about 100x slower than fp32.
    """
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, f"{torch.cuda.get_device_name(device)} supports bf16"
        return False, f"{torch.cuda.get_device_name(device)} has no bf16 support"
    if device.type != "cpu":
        return False, f"bf16 is not tuned for {device.type} devices"
    if not cpu_has_bf16_units():
        return False, "this CPU has no bf16 units, so bf16 would be emulated and slow"
    speedup = cpu_bf16_speedup()
    if speedup >= BF16_MIN_CPU_SPEEDUP:
        return True, f"this CPU's bf16 units ran a matmul {speedup:.1f}x as fast as fp32"
    return False, (
        f"this CPU has bf16 units, but they ran a matmul at {speedup:.1f}x fp32's speed"
        f" (bf16 pays from {BF16_MIN_CPU_SPEEDUP:g}x)"
    )


@cache
def cpu_bf16_speedup(repeats: int = 5) -> float:
    """How many times as fast as fp32 this CPU runs a bf16 matmul of a small LLM's MLP (1024 tokens of
    SmolLM2-135M, the shape bench/ measured the matmul peaks on): the best of `repeats` interleaved
    timings of each, so that machine noise hits both alike (about 0.1 s, once per process)."""
    generator = torch.Generator().manual_seed(0)
    left, right = torch.randn(1024, 576, generator=generator), torch.randn(576, 1536, generator=generator)
    operands = {dtype: (left.to(dtype), right.to(dtype)) for dtype in (torch.float32, torch.bfloat16)}
    best = dict.fromkeys(operands, float("inf"))
    for _ in range(repeats + 1):  # the first round warms up (allocation, kernel selection)
        for dtype, (a, b) in operands.items():
            started = time.perf_counter()
            torch.matmul(a, b)
            best[dtype] = min(best[dtype], time.perf_counter() - started)
    return best[torch.float32] / best[torch.bfloat16]


def resolve_precision(precision: str, device: torch.device | None = None) -> str:
    """'fp32' or 'bf16' for `precision` (auto, fp32 or bf16) on `device` (default: the GPU if any).

    For "auto" the choice and its reason are logged once per process and device kind.
    """
    if precision in ("fp32", "bf16"):
        return precision
    if precision != "auto":
        raise LsllmError(f"unknown precision {precision!r}; use auto, fp32 or bf16")
    fast, reason = bf16_is_fast(device or default_device())
    chosen = "bf16" if fast else "fp32"
    _log_choice(chosen, reason)
    return chosen


@cache
def _log_choice(chosen: str, reason: str) -> None:
    logger.info("precision auto: %s, since %s", chosen, reason)


def quantize_to_int8(backbone: nn.Module) -> None:
    """Give the backbone's linear layers int8 weights, activations quantised per call (CPU only), except
    the layers that read the MLP's wide intermediate activations (down_proj in Llama-style models).

    Predicting one short text on a CPU is bound by reading the weights (bench/README.md): int8 weights
    are a quarter of the bytes. torch's dynamic quantisation runs them with fbgemm/oneDNN int8 kernels;
    its successor, torchao, was ten times slower than fp32 on CPU without torch.compile. Activations get
    one scale per tensor, and the MLP's intermediate activations have rare huge values that flatten all
    the others: quantising those layers too cost 6-14 points on SST-2 and CoNLL-2003 in bench/; with
    them left in fp32, scores stayed within seed noise.
    """
    hidden = backbone.config.hidden_size
    narrow = [
        name
        for name, layer in backbone.named_modules()
        if isinstance(layer, nn.Linear) and layer.in_features <= hidden
    ]
    # One scale per output channel: an LLM's few large-weight channels do not coarsen all the others.
    if not _compat.quantize_linear_int8(backbone, narrow):
        raise LsllmError(
            f"--precision int8 needs torch.ao.quantization, which torch {torch.__version__} no longer"
            " has; use --precision fp32"
        )
