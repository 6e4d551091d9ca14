"""Padding-free packing: a padded batch's real tokens, several examples side by side in fewer rows.

Shuffled batches of short, uneven examples are mostly padding. Packing puts examples next to each other,
restarts their positions and gives attention a block-diagonal mask (causal within a block in causal
mode), so every token still sees exactly its own example and the hidden states equal the padded ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Attention backends that take a ready 4D mask from us; others (flash, flex) run the padded batch.
PACKABLE_ATTENTION = ("sdpa", "eager")


@dataclass
class Packing:
    """Where each packed slot's token comes from in the padded batch, and which example it belongs to."""

    source: torch.Tensor  # (rows, width): flat index into the padded (batch * length) tokens; -1 is empty
    example: torch.Tensor  # (rows, width): example number of each slot; -1 is empty
    position_ids: torch.Tensor  # (rows, width): position of each token inside its own example

    def gather(self, padded: torch.Tensor) -> torch.Tensor:
        """Padded (batch, length) ids -> packed (rows, width) ids; empty slots get the first token's id."""
        return padded.reshape(-1)[self.source.clamp(min=0)]

    def scatter(self, packed: torch.Tensor, batch: int, length: int) -> torch.Tensor:
        """Packed (rows, width, dim) states -> padded (batch, length, dim); padding positions are zero."""
        filled = self.source >= 0
        padded = packed.new_zeros(batch * length, packed.shape[-1])
        padded[self.source[filled]] = packed[filled]
        return padded.reshape(batch, length, -1)

    def attention_mask(self, causal: bool, implementation: str, dtype: torch.dtype) -> torch.Tensor:
        """(rows, 1, width, width): boolean for sdpa, additive for eager. Empty slots see only themselves."""
        same = self.example.unsqueeze(2) == self.example.unsqueeze(1)
        width = self.example.shape[1]
        diagonal = torch.eye(width, dtype=torch.bool, device=same.device)
        allowed = (same & (self.example >= 0).unsqueeze(2)) | diagonal
        if causal:
            allowed &= torch.ones_like(diagonal).tril()  # a token sees only earlier slots
        allowed = allowed.unsqueeze(1)
        if implementation == "sdpa":
            return allowed
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )


def padded_layout(attention_mask: torch.Tensor) -> Packing:
    """The padded batch as it is, one example per row, for when every layer needs an explicit mask."""
    batch, length = attention_mask.shape
    real = attention_mask.bool()
    rows = torch.arange(batch, device=real.device).unsqueeze(1).expand(batch, length)
    flat = torch.arange(batch * length, device=real.device).reshape(batch, length)
    positions = (real.long().cumsum(dim=1) - 1).clamp(min=0)
    return Packing(flat.masked_fill(~real, -1), rows.masked_fill(~real, -1), positions)


def first_fit_rows(lengths: list[int], width: int) -> list[list[int]]:
    """Examples grouped into rows of at most `width` tokens, longest first (first-fit decreasing)."""
    rows: list[list[int]] = []
    free: list[int] = []
    for example in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for row, space in enumerate(free):
            if lengths[example] <= space:
                rows[row].append(example)
                free[row] -= lengths[example]
                break
        else:
            rows.append([example])
            free.append(width - lengths[example])
    return rows


def plan_packing(attention_mask: torch.Tensor) -> Packing | None:
    """How to pack this padded batch into rows no wider than it; None when packing would save no row."""
    batch, length = attention_mask.shape
    real = attention_mask.bool()
    lengths = real.sum(dim=1).tolist()
    rows = first_fit_rows(lengths, length)
    if len(rows) >= batch:
        return None
    width = max(sum(lengths[i] for i in row) for row in rows)
    source = torch.full((len(rows), width), -1, dtype=torch.long)
    example = torch.full((len(rows), width), -1, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    flat_positions = torch.arange(batch * length).reshape(batch, length)
    for r, members in enumerate(rows):
        start = 0
        for i in members:
            end = start + lengths[i]
            source[r, start:end] = flat_positions[i][real[i].cpu()]
            example[r, start:end] = i
            position_ids[r, start:end] = torch.arange(lengths[i])
            start = end
    device = attention_mask.device
    return Packing(source.to(device), example.to(device), position_ids.to(device))
