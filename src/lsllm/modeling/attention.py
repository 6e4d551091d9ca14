"""Causal or bidirectional attention for any Hugging Face decoder, verified rather than assumed.

transformers 5 builds a bidirectional (padding-only) mask for every decoder whose config says
`is_causal = False`; we set that flag and then probe the model to prove the switch took effect.
"""

from __future__ import annotations

import torch
from torch import nn

from lsllm.config import ATTENTION_MODES
from lsllm.errors import LsllmError


def set_attention(backbone: nn.Module, mode: str) -> None:
    """Switch the backbone's self-attention between causal and bidirectional, in place."""
    if mode not in ATTENTION_MODES:
        raise LsllmError(f"unknown attention mode {mode!r}; use one of: {', '.join(ATTENTION_MODES)}")
    backbone.config.is_causal = mode == "causal"


def sees_later_tokens(backbone: nn.Module, vocab_size: int, length: int = 6) -> bool:
    """Whether the first token's final state changes when only the last token changes."""
    ids = torch.arange(1, length + 1).remainder(vocab_size).unsqueeze(0)
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % vocab_size
    device = next(backbone.parameters()).device
    mask = torch.ones_like(ids)
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        first = [
            backbone(input_ids=x.to(device), attention_mask=mask.to(device)).last_hidden_state[0, 0].float()
            for x in (ids, changed)
        ]
    backbone.train(was_training)
    return not torch.allclose(first[0], first[1], atol=1e-6, rtol=0)


def check_attention(backbone: nn.Module, mode: str, vocab_size: int) -> None:
    """Fail loudly if the backbone's architecture ignores the requested attention mode."""
    if sees_later_tokens(backbone, vocab_size) != (mode == "bidirectional"):
        arch = type(backbone).__name__
        raise LsllmError(
            f"{arch} did not switch to {mode} attention (its attention code ignores config.is_causal); "
            f"use --attention {'causal' if mode == 'bidirectional' else 'bidirectional'} or another model"
        )
