"""Pick the number format: bf16 where the hardware runs it natively, fp32 elsewhere."""

from __future__ import annotations

import torch


def bf16_is_fast(device: torch.device | None = None) -> bool:
    """bf16 pays off on GPUs that support it and on CPUs with bf16 units (AVX-512 BF16 or AMX).

    Elsewhere (AVX2, plain AVX-512) PyTorch emulates bf16 matmuls; on the AVX2 EPYC bench/ runs on
    they were about 100x slower than fp32.
    """
    on_gpu = torch.cuda.is_available() if device is None else device.type == "cuda"
    if on_gpu:
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so absent in some torch
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def use_bf16(precision: str, device: torch.device | None = None) -> bool:
    """Whether to compute in bf16 on `device` (default: the GPU if there is one, else the CPU)."""
    return precision == "bf16" or (precision == "auto" and bf16_is_fast(device))
