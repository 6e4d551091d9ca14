"""FLOPs of a Llama-style decoder counted from its shapes, and the machine's measured matmul peak.

Counted per real token (padding is never counted: it is work a system chose to do, not work the task
needs), for a sequence of L real tokens, per layer:

- linear layers: 2 * in * out for each of q, k, v, o, gate, up and down;
- attention: 2 * L * head_dim * heads for the scores (QK^T) and as much for the weighted values, so
  4 * L * head_dim * heads (all L keys, causal or not: with a mask the kernels compute them all);
- LoRA on every linear layer: 2 * r * (in + out) (x @ A, then @ B), in training only (prediction
  merges it away in lsllm, and the baseline pipeline has none).

Training = forward + backward. The backbone's weights are frozen, so the backward pass of a linear layer
computes only the input gradient (one matmul, as much as the forward), not the weight gradient; the
attention backward computes dQ, dK and dV through scores and values (twice its forward); LoRA's
backward computes input and weight gradients (twice its forward). Training per token is therefore
2 * linear + 3 * attention + 3 * LoRA, about 2x the forward pass. The embedding lookup and the
classification head (2 * hidden * labels per token at most, under 0.1%) are left out.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Shapes:
    """The sizes of a decoder that its FLOPs depend on, read from a transformers config."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int

    @classmethod
    def from_config(cls, config) -> Shapes:
        heads = config.num_attention_heads
        return cls(
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            layers=config.num_hidden_layers,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        )

    def linears(self) -> list[tuple[int, int]]:
        """(in, out) of every linear layer of one block: q, k, v, o, gate, up, down."""
        h, q, kv, i = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
            self.intermediate,
        )
        return [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]

    def linear_per_token(self) -> int:
        return 2 * self.layers * sum(fan_in * fan_out for fan_in, fan_out in self.linears())

    def attention_per_token(self, length: int) -> int:
        return 4 * self.layers * self.heads * self.head_dim * length

    def lora_per_token(self, r: int) -> int:
        return 2 * self.layers * r * sum(fan_in + fan_out for fan_in, fan_out in self.linears())

    def forward(self, lengths: list[int]) -> int:
        """Prediction FLOPs for sequences of these real-token lengths (no LoRA: it is merged)."""
        return sum(n * (self.linear_per_token() + self.attention_per_token(n)) for n in lengths)

    def training(self, lengths: list[int], lora_r: int) -> int:
        """One training pass (forward + backward, frozen weights, LoRA of rank `lora_r`) over `lengths`."""
        per_token = 2 * self.linear_per_token() + 3 * self.lora_per_token(lora_r)
        return sum(n * (per_token + 3 * self.attention_per_token(n)) for n in lengths)

    def to_dict(self) -> dict:
        return asdict(self)


def _synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def matmul_peak(tokens: int, shapes: Shapes, dtype_name: str, device: str, repeats: int = 7) -> dict:
    """Best FLOP/s of torch.matmul on the model's MLP shape (tokens x hidden @ hidden x intermediate).

    Each timing runs enough matmuls to last about 50 ms; the best of `repeats` timings is the peak
    (stopping early after 20 s, for emulated dtypes).
    """
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(tokens, shapes.hidden, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(shapes.hidden, shapes.intermediate, generator=generator).to(device=device, dtype=dtype)
    flops = 2 * tokens * shapes.hidden * shapes.intermediate

    def run(count: int) -> float:
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(count):
            torch.matmul(a, b)
        _synchronize(device)
        return time.perf_counter() - started

    run(1)  # warm-up: allocation, kernel selection
    count = max(1, math.ceil(0.05 / max(run(1), 1e-6)))
    best, began, timings = math.inf, time.perf_counter(), 0
    while timings < repeats and (timings < 2 or time.perf_counter() - began < 20):
        best = min(best, run(count) / count)
        timings += 1
    return {
        "dtype": dtype_name,
        "device": device,
        "shape": [tokens, shapes.hidden, shapes.intermediate],
        "threads": torch.get_num_threads(),
        "timings": timings,
        "matmuls_per_timing": count,
        "flops_per_second": flops / best,
    }
