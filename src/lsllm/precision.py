"""Pick the number format: bf16 where the hardware runs it natively, fp32 elsewhere; int8 on request."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from lsllm.errors import LsllmError


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices pointing at torchao; see above
        try:
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        except ImportError:
            raise LsllmError(
                f"--precision int8 needs torch.ao.quantization, which torch {torch.__version__} no longer"
                " has; use --precision fp32"
            ) from None
        # One scale per output channel: an LLM's few large-weight channels do not coarsen all the others.
        quantize_dynamic(backbone, dict.fromkeys(narrow, per_channel_dynamic_qconfig), inplace=True)
