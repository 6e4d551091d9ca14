"""An export is compared with the run before it is written: the same logits on probe inputs of several
lengths, padded left and right, or no export at all."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from lsllm.config import TrainConfig
from lsllm.data.collate import Collator
from lsllm.data.encoding import Encoder
from lsllm.data.examples import SequenceExample
from lsllm.errors import LsllmError
from lsllm.modeling.model import LabelSupervisedModel

PROBE_TEXTS = ["a", "the film was good", "one two three four five six seven eight nine"]
TOLERANCE = 1e-4  # fp32, the same weights: only the order of additions may differ
Logits = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def probe_ids(config: TrainConfig, tokenizer) -> list[list[int]]:
    """Short inputs of several lengths, encoded as the run encodes them."""
    if config.task == "token":
        return [tokenizer(text)["input_ids"] for text in PROBE_TEXTS]
    examples = [SequenceExample(text, text if config.text_pair else None) for text in PROBE_TEXTS]
    features = Encoder.for_config(tokenizer, config).encode_sequences(examples, None, "the export's probe")
    return [feature["input_ids"] for feature in features]


@torch.no_grad()
def _both(
    model: LabelSupervisedModel, exported: Logits, config: TrainConfig, tokenizer
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The run's and the export's logits at every real position of the probe inputs, padded each way."""
    for side in ("left", "right"):
        batch = Collator(tokenizer.pad_token_id, side)(
            [{"input_ids": ids} for ids in probe_ids(config, tokenizer)]
        )
        ours, theirs = model(**batch)["logits"], exported(batch)
        if model.task == "token":
            real = batch["attention_mask"].bool()
            ours, theirs = ours[real], theirs[real]
        yield ours, theirs


def check_same_logits(
    model: LabelSupervisedModel, exported: Logits, what: str, config: TrainConfig, tokenizer, fix: str
) -> None:
    """Refuse, naming `what` and the `fix`, unless `exported` gives `model`'s logits on the probe inputs."""
    largest = max(float((a - b).abs().max()) for a, b in _both(model, exported, config, tokenizer))
    if largest > TOLERANCE:
        raise LsllmError(
            f"{what} does not compute this run's logits (they differ by up to {largest:.2g}); {fix}"
        )


def largest_change(model: LabelSupervisedModel, exported: Logits, config: TrainConfig, tokenizer) -> float:
    """How far `exported` moves any of the run's probabilities on the probe inputs (for a lossy export)."""
    pairs = _both(model, exported, config, tokenizer)
    return max(float((a.softmax(-1) - b.softmax(-1)).abs().max()) for a, b in pairs)
