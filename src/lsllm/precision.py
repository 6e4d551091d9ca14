"""Pick the number format: bf16 where the hardware runs it natively, fp32 elsewhere."""

from __future__ import annotations

import torch


def bf16_is_fast() -> bool:
    """bf16 pays off on GPUs that support it and on CPUs with AVX-512 or AMX bf16 units."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX")


def use_bf16(precision: str) -> bool:
    return precision == "bf16" or (precision == "auto" and bf16_is_fast())
