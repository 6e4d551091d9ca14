"""Pad a list of encoded examples into one batch, on whichever side the tokenizer pads."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lsllm.data.encoding import IGNORE_INDEX


@dataclass
class Collator:
    """`labels_per_token`: each feature's labels are one id per token, padded like its input; otherwise one
    target per example (a class id, a 0/1 vector or a number), stacked as they are."""

    pad_token_id: int
    padding_side: str = "right"
    labels_per_token: bool = False

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        batch = {
            "input_ids": self._pad([f["input_ids"] for f in features], width, self.pad_token_id),
            "attention_mask": self._pad([[1] * len(f["input_ids"]) for f in features], width, 0),
        }
        if "labels" in features[0]:
            labels = [f["labels"] for f in features]
            batch["labels"] = (
                self._pad(labels, width, IGNORE_INDEX) if self.labels_per_token else torch.tensor(labels)
            )
        return batch

    def _pad(self, rows: list[list[int]], width: int, value: int) -> torch.Tensor:
        if self.padding_side == "left":
            return torch.tensor([[value] * (width - len(row)) + row for row in rows])
        return torch.tensor([row + [value] * (width - len(row)) for row in rows])
