"""Causal or bidirectional attention for any Hugging Face decoder, verified rather than assumed.

transformers 5 builds a bidirectional (padding-only) mask for every decoder whose config says
`is_causal = False`; we set that flag and then probe the model to prove the switch took effect.
Layer-wise unmasking keeps the backbone causal and hands the chosen layers a bidirectional mask instead,
through a keyword the backbone passes on to every layer: no model code is copied or patched.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from lsllm import _compat
from lsllm.config import ATTENTION_MODES, layer_slice
from lsllm.errors import LsllmError

# The extra keyword that carries the bidirectional mask from the backbone's forward to its layers.
LAYER_MASK = "lsllm_bidirectional_mask"


def backbone_attention(attention: str, bidirectional_layers: str | None) -> str:
    """The mode the backbone itself runs in: causal under layer-wise unmasking, whose chosen layers get
    their bidirectional mask from `unmask_layers`."""
    return "causal" if bidirectional_layers is not None else attention


def unmask_layers(backbone: nn.Module, spec: str) -> range:
    """Make the layers that `spec` (a --bidirectional-layers slice) names attend both ways whenever the
    backbone is called with `LAYER_MASK`; the others keep the causal mask. Returns the chosen layers."""
    try:
        layers = _compat.decoder_layers(backbone)
    except TypeError as error:
        raise LsllmError(
            f"layer-wise unmasking cannot reach this model's layers ({error}); use"
            " --attention bidirectional for every layer instead"
        ) from None
    chosen = range(len(layers))[layer_slice(spec)]
    if not chosen:
        raise LsllmError(
            f"--bidirectional-layers {spec} selects none of this model's {len(layers)} layers (numbered 0 to"
            f" {len(layers) - 1}); choose a slice inside that range"
        )
    for number, layer in enumerate(layers):
        layer.register_forward_pre_hook(partial(_choose_mask, number in chosen), with_kwargs=True)
    return chosen


def _choose_mask(bidirectional: bool, layer: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    mask = kwargs.pop(LAYER_MASK, None)
    if bidirectional and mask is not None:
        try:
            kwargs = _compat.with_layer_attention_mask(layer, kwargs, mask)
        except TypeError as error:
            raise LsllmError(
                f"layer-wise unmasking does not fit this model ({error}); use --attention"
                " bidirectional for every layer instead"
            ) from None
    return args, kwargs


def set_attention(backbone: nn.Module, mode: str) -> None:
    """Switch the backbone's self-attention between causal and bidirectional, in place."""
    if mode not in ATTENTION_MODES:
        raise LsllmError(f"unknown attention mode {mode!r}; use one of: {', '.join(ATTENTION_MODES)}")
    backbone.config.is_causal = mode == "causal"


def sees_later_tokens(module: nn.Module, final_states: Callable, vocab_size: int, length: int = 6) -> bool:
    """Whether the first token's final state changes when only the last token changes; `final_states`
    maps (input_ids, attention_mask) to the states of `module`, which is probed in eval mode."""
    ids = torch.arange(1, length + 1).remainder(vocab_size).unsqueeze(0)
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % vocab_size
    device = next(module.parameters()).device
    mask = torch.ones_like(ids).to(device)
    was_training = module.training
    module.eval()
    with torch.no_grad():
        first = [final_states(x.to(device), mask)[0, 0].float() for x in (ids, changed)]
    module.train(was_training)
    return not torch.allclose(first[0], first[1], atol=1e-6, rtol=0)


def backbone_states(backbone: nn.Module) -> Callable:
    return lambda ids, mask: backbone(input_ids=ids, attention_mask=mask).last_hidden_state


def check_attention(backbone: nn.Module, mode: str, vocab_size: int) -> None:
    """Fail loudly if the backbone's architecture ignores the requested attention mode."""
    if sees_later_tokens(backbone, backbone_states(backbone), vocab_size) != (mode == "bidirectional"):
        arch = type(backbone).__name__
        raise LsllmError(
            f"{arch} did not switch to {mode} attention (its attention code ignores config.is_causal); "
            f"use --attention {'causal' if mode == 'bidirectional' else 'bidirectional'} or another model"
        )


def check_layerwise(model: nn.Module) -> None:
    """Fail loudly if layer-wise unmasking did not reach the model's layers (`model` is a
    LabelSupervisedModel: its hidden states pass the bidirectional mask on)."""
    if not sees_later_tokens(model, model.hidden_states, model.config.vocab_size):
        raise LsllmError(
            f"{type(model.backbone).__name__} ignored the bidirectional mask of --bidirectional-layers;"
            " use --attention bidirectional for every layer instead, or another model"
        )
