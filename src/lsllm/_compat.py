"""Every use of a private or version-specific API of torch, transformers or peft, in one place.

Each entry names the versions it was written against; tests/test_compat.py fails loudly when an upgrade
breaks one, so the fix lands here and nowhere else.
"""

from __future__ import annotations

import torch


def cpu_bf16_units() -> bool | None:
    """Whether the CPU has AVX-512 BF16 or AMX tiles, as torch's own dispatcher sees it; None if torch no
    longer answers. torch 2.4-2.13: `torch.cpu._is_avx512_bf16_supported` and `_is_amx_tile_supported`."""
    probes = [
        getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    if not all(callable(probe) for probe in probes):
        return None
    return any(probe() for probe in probes)
