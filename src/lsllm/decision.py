"""The decision rule, in one place: what a run predicts from its head's outputs. One label per text (or
word) is the likeliest (softmax, argmax; for a run trained with --metric macro_f1, after adding each
label's offset, tuned on dev when training ends); several labels per text are every label whose sigmoid
probability reaches its threshold, tuned on dev likewise; a regression output is the number.
Training's dev scores, `lsllm eval`, `predict`, `serve` and exports all decide through it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lsllm.data.labels import LabelMap

UNTUNED_THRESHOLD = 0.5  # a multi-label model's threshold before dev has tuned one


@dataclass(frozen=True)
class Decision:
    """The rule for one label shape (lsllm.data.labels.SHAPES), with a multi-label run's thresholds or a
    single-label run's offsets (one per label, in head order)."""

    shape: str
    thresholds: tuple[float, ...] | None = None
    offsets: tuple[float, ...] | None = None

    @classmethod
    def untuned(cls, labels: LabelMap) -> Decision:
        """The rule before dev has tuned anything: every multi-label threshold at UNTUNED_THRESHOLD."""
        thresholds = (UNTUNED_THRESHOLD,) * len(labels) if labels.shape == "multi" else None
        return cls(labels.shape, thresholds)

    def scores(self, logits) -> torch.Tensor:
        """What each output means: softmax probabilities (single; of the logits plus the offsets, so that the
        chosen label is the likeliest), sigmoid probabilities (multi), or the predicted number (regression,
        the last dimension dropped). Takes logits of any leading shape."""
        logits = torch.as_tensor(logits).float()
        if self.offsets is not None:
            logits = logits + torch.tensor(self.offsets)
        if self.shape == "multi":
            return logits.sigmoid()
        if self.shape == "regression":
            return logits[..., 0]
        return logits.softmax(-1)

    def decide(self, logits) -> torch.Tensor:
        """The prediction: class ids (single), a boolean per label (multi), or the number (regression)."""
        scores = self.scores(logits)
        if self.shape == "multi":
            return scores >= torch.tensor(self.thresholds)
        if self.shape == "regression":
            return scores
        return scores.argmax(-1)
