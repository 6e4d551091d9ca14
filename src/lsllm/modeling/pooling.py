"""Turn per-token states into one vector per sequence, counting real tokens only."""

from __future__ import annotations

import torch

from lsllm.config import POOLING_MODES
from lsllm.errors import LsllmError


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each row's last real token, whether the batch is padded left or right."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask.bool()).argmax(dim=1)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool `hidden` (batch, seq, dim) over the positions where `attention_mask` is 1."""
    real = attention_mask.bool().unsqueeze(-1)
    if mode == "last":
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, last_token_index(attention_mask)]
    if mode == "mean":
        total = hidden.masked_fill(~real, 0.0).sum(dim=1)
        return total / real.sum(dim=1).clamp(min=1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(~real, torch.finfo(hidden.dtype).min).amax(dim=1)
    raise LsllmError(f"unknown pooling mode {mode!r}; use one of: {', '.join(POOLING_MODES)}")
