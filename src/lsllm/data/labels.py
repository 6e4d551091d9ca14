"""Map label values to class ids in a stable order, so ids mean the same thing across runs."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lsllm.data.tables import shown
from lsllm.errors import LsllmError

_INTEGER = re.compile(r"-?\d+")
_SHOWN_NAMES = 20


@dataclass
class LabelMap:
    """Ordered label values (str or int); a label's id is its position in `names`."""

    names: list[str | int]
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.names:
            raise LsllmError("the label set is empty; label the training data or list labels with --labels")
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
    def from_names(cls, names: Iterable[str | int]) -> LabelMap:
        """Keep the user's order (from --labels)."""
        return cls(list(names))

    @classmethod
    def for_tags(cls, tag_lists: Iterable[Iterable[str]]) -> LabelMap:
        """Build a complete BIO tag set (O, and B-X and I-X for every type seen) from BIO-normalised tags."""
        types = {tag[2:] for tags in tag_lists for tag in tags if tag != "O"}
        return cls.from_labels(["O"] + [f"{prefix}-{kind}" for kind in types for prefix in "BI"])

    @classmethod
    def from_dict(cls, data: dict) -> LabelMap:
        return cls(list(data["names"]))

    def to_dict(self) -> dict:
        return {"names": list(self.names)}

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
