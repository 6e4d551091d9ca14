"""Frozen backbones in 4 or 8 bits (QLoRA) with bitsandbytes: the linear layers' weights are stored as NF4
with double quantisation, or as LLM.int8, and computed in bf16; LoRA and the head stay fp32 beside them.

QLoRA is for GPUs: lsllm runs quantised layers on CUDA only and refuses them elsewhere in one line.
(bitsandbytes 0.50 has a slow CPU fallback for them, which lsllm's tests borrow to check these paths on
machines without a GPU.) A quantised run keeps its LoRA weights apart when it predicts: folding them into
4-bit weights would round them into the quantisation grid. Exporting one dequantises the weights exactly
as training computed with them, then folds LoRA in.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from lsllm.errors import LsllmError

if TYPE_CHECKING:
    import torch
    from torch import nn

# The devices lsllm runs quantised layers on.
DEVICES = ("cuda",)
INSTALL = "pip install 'lsllm[qlora]'"


def check(quantize: str, device: torch.device, doing: str, fix: str = "") -> None:
    """A one-line error unless `doing` (e.g. "training") with `quantize` weights can run on `device`;
    `fix` adds what to do instead when the device is the problem."""
    if quantize == "none":
        return
    if device.type not in DEVICES:
        instead = f"; {fix}" if fix else ""
        raise LsllmError(
            f"{doing} with --quantize {quantize} needs a CUDA GPU (lsllm runs bitsandbytes on CUDA only),"
            f" not {device.type}{instead}"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise LsllmError(
            f"{doing} with --quantize {quantize} needs bitsandbytes, which a plain install leaves out;"
            f" install it with: {INSTALL}"
        )


def loading_options(quantize: str, device: torch.device) -> dict[str, Any]:
    """`from_pretrained`'s keywords that load a backbone's linear layers quantised straight onto `device`
    (none for "none"): NF4, double quantisation and bf16 compute, as the QLoRA paper trains."""
    if quantize == "none":
        return {}
    import torch
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        settings = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    else:
        settings = BitsAndBytesConfig(load_in_8bit=True)
    return {"quantization_config": settings, "device_map": {"": device}}


def is_quantized(backbone: nn.Module) -> bool:
    return bool(getattr(backbone, "is_quantized", False))


def dequantize(backbone: nn.Module) -> None:
    """Replace the quantised linear layers by plain bf16 ones holding the weights exactly as training
    computed with them (bitsandbytes dequantises to the compute format); the config forgets the
    quantisation too (transformers' own `dequantize`)."""
    backbone.dequantize()
