"""LoRA on the backbone (every linear layer by default, the head trained in full), with LoRA's input
dropout drawn from cheaper random bits: the same Bernoulli masks at a third of the cost on CPU.

On CPU, torch's dropout draws one float per element from its Mersenne Twister (`bernoulli_`). With LoRA
on every linear layer of a 135M model that was a fifth of each training step (see bench/README.md,
"What the profile showed"). Here one 64-bit draw decides four elements, 16 bits each, so an element is
dropped with probability p rounded to 1/65536. GPUs keep torch's own dropout, which is already fast.
"""

from __future__ import annotations

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from lsllm import _compat
from lsllm.errors import LsllmError

_BITS = 16
_LEVELS = 2**_BITS


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """A boolean mask of `shape`, each element True (kept) with probability 1 - p, independently."""
    count = shape.numel()
    words = torch.empty((count * _BITS + 63) // 64, dtype=torch.int64, device=device)
    chunks = words.random_(-(2**63), 2**63 - 1).view(torch.int16)[:count]  # uniform in [-2**15, 2**15)
    return (chunks >= round(p * _LEVELS) - _LEVELS // 2).view(shape)


class FastDropout(nn.Dropout):
    """nn.Dropout whose CPU training masks come from `keep_mask`; otherwise nn.Dropout itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.p >= 1 or x.device.type != "cpu":
            return super().forward(x)
        return torch.where(keep_mask(x.shape, self.p, x.device), x, 0) * (1 / (1 - self.p))


def speed_up_dropout(model: nn.Module) -> None:
    """Swap every nn.Dropout inside `model`'s LoRA layers for a FastDropout with the same p."""
    for dropouts in list(_compat.lora_dropouts(model)):
        for name, dropout in dropouts.items():
            if type(dropout) is nn.Dropout:
                dropouts[name] = FastDropout(dropout.p)


def linear_layer_names(module: nn.Module) -> list[str]:
    """The distinct names of the backbone's linear layers: LoRA's default targets."""
    return sorted(
        {name.rsplit(".", 1)[-1] for name, child in module.named_modules() if isinstance(child, nn.Linear)}
    )


def add_lora(model: nn.Module, r: int, alpha: float, dropout: float, targets: list[str] | None) -> PeftModel:
    """Wrap with LoRA on the backbone; the head is trained in full and saved with the adapter."""
    available = linear_layer_names(model.backbone)
    targets = targets or available
    missing = sorted(set(targets) - set(available))
    if missing:
        raise LsllmError(
            f"--lora-targets {', '.join(missing)} not found in the model; "
            f"its linear layers are: {', '.join(available)}"
        )
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, modules_to_save=["head"]
    )
    wrapped = get_peft_model(model, config)
    speed_up_dropout(wrapped)
    return wrapped
