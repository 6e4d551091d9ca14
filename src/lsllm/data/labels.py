"""The label set of a run: its names in a stable order (so ids mean the same thing across runs) and its
shape, which says what a text's label is: one class, several classes, or a number."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lsllm.data.tables import shown
from lsllm.errors import LsllmError

_INTEGER = re.compile(r"-?\d+")
_SHOWN_NAMES = 20

# single: one class per text (or per word); multi: any number of classes per text; regression: a number,
# named by its one output.
SHAPES = ("single", "multi", "regression")


@dataclass
class LabelMap:
    """Ordered label values (str or int); a label's id is its position in `names`, which are the head's
    outputs. `shape` says what one example's label is (SHAPES)."""

    names: list[str | int]
    shape: str = "single"
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.names:
            raise LsllmError("the label set is empty; label the training data or list labels with --labels")
        if self.shape not in SHAPES:
            raise ValueError(f"unknown label shape {self.shape!r}; use one of: {', '.join(SHAPES)}")
        self._ids = {}
        for position, name in enumerate(self.names):
            if str(name) in self._ids:
                raise LsllmError(f"label {name!r:.60} is listed twice; give each label once with --labels")
            self._ids[str(name)] = position

    @classmethod
    def from_labels(cls, values: Iterable[str | int]) -> LabelMap:
        """Build the label set from training labels: integers numerically, BIO tags by type, else sorted."""
        unique: dict[str, str | int] = {}
        for value in values:
            unique.setdefault(str(value), value)
        distinct = list(unique.values())
        return cls(sorted(distinct, key=_sort_key(distinct)))

    @classmethod
    def from_names(cls, names: Iterable[str | int], shape: str = "single") -> LabelMap:
        """Keep the user's order (from --labels or --label-columns)."""
        return cls(list(names), shape)

    @classmethod
    def for_label_lists(cls, label_lists: Iterable[Iterable[str | int]]) -> LabelMap:
        """The multi-label set: every label in any list, in from_labels' order."""
        return cls(cls.from_labels([label for labels in label_lists for label in labels]).names, "multi")

    @classmethod
    def for_regression(cls, name: str) -> LabelMap:
        """A regression run's one output, named after the column it learns."""
        return cls([name], "regression")

    @classmethod
    def for_tags(cls, tag_lists: Iterable[Iterable[str]]) -> LabelMap:
        """Build a complete BIO tag set (O, and B-X and I-X for every type seen) from BIO-normalised tags."""
        types = {tag[2:] for tags in tag_lists for tag in tags if tag != "O"}
        return cls.from_labels(["O"] + [f"{prefix}-{kind}" for kind in types for prefix in "BI"])

    @classmethod
    def from_dict(cls, data: dict) -> LabelMap:
        """Read labels.json; one written before label shapes existed is a single-label set."""
        return cls(list(data["names"]), data.get("shape", "single"))

    def to_dict(self) -> dict:
        return {"names": list(self.names), "shape": self.shape}

    def target(self, value, source: str | None = None) -> int | float | list[float]:
        """What the head learns for one example's label: a class id (single), a 0/1 vector over the labels
        (multi, where a lone label is a list of one) or the number itself (regression)."""
        if self.shape == "regression":
            return float(value)
        if self.shape == "multi":
            hot = [0.0] * len(self.names)
            for label in value if isinstance(value, list) else [value]:
                hot[self.index(label, source)] = 1.0
            return hot
        if isinstance(value, list):
            where = f" in {source}" if source else ""
            raise LsllmError(
                f"label {value!r:.60}{where} is a list, but this run learned one label per text; train with"
                " --multi-label for several labels per text, or give one label per row"
            )
        return self.index(value, source)

    def index(self, value: str | int, source: str | None = None) -> int:
        """Return the id of a label; 1 and "1" are the same label."""
        try:
            return self._ids[str(value)]
        except KeyError:
            where = f" in {source}" if source else ""
            raise LsllmError(
                f"label {value!r:.60}{where} is not among the training labels ({self._shown_names()}); "
                "fix the data or list all labels with --labels"
            ) from None

    def balancing_weights(self, targets: list) -> list[float]:
        """`--class-weights auto`, from the training targets (LabelMap.target; token runs: lists of tag
        ids). One label per text or word: n / (k * n_c) for class c (n labels, k classes seen, n_c of class
        c; scikit-learn's "balanced" weights), so every class seen weighs the same in total and the weights
        average 1 over the training labels; a class never seen gets 1, which no loss term uses. Several
        labels per text: each label's negatives / positives, binary cross-entropy's pos_weight, so its
        positives weigh as much as its negatives; 1 for a label that is never or always present."""
        import numpy as np
        from sklearn.utils.class_weight import compute_class_weight

        if self.shape == "multi":
            positives = np.asarray(targets, dtype=float).sum(axis=0)
            negatives = len(targets) - positives
            balanced = positives * negatives > 0
            return np.where(balanced, negatives / np.maximum(positives, 1), 1.0).tolist()
        ids = np.array([t for target in targets for t in (target if isinstance(target, list) else [target])])
        weights, seen = np.ones(len(self.names)), np.unique(ids)
        weights[seen] = compute_class_weight("balanced", classes=seen, y=ids)
        return weights.tolist()

    def name(self, index: int) -> str | int:
        return self.names[index]

    def __len__(self) -> int:
        return len(self.names)

    def _shown_names(self) -> str:
        names = ", ".join(map(shown, self.names[:_SHOWN_NAMES]))
        return names if len(self.names) <= _SHOWN_NAMES else f"{names}, ... {len(self.names)} in all"


def _sort_key(values: list[str | int]) -> Callable[[Any], Any]:
    """Pick the ordering for a label set: integers (or integer strings), BIO tags, or plain strings."""
    texts = [str(value) for value in values]
    if all(_INTEGER.fullmatch(text) for text in texts):
        return lambda value: int(str(value))
    if all(text == "O" or text.startswith(("B-", "I-")) for text in texts):
        return lambda value: (0, "", "") if value == "O" else (1, value[2:], value[0])
    return str
