"""How a run reads its files and turns them into model inputs: task, fields, label set and tokenizer."""

from __future__ import annotations

import random
from dataclasses import dataclass

from lsllm.config import TrainConfig
from lsllm.data.encoding import Encoder
from lsllm.data.examples import SequenceExample, TokenExample, read_sequence_examples, read_token_examples
from lsllm.data.labels import LabelMap
from lsllm.data.sources import Source

Example = SequenceExample | TokenExample


def read_examples(
    config: TrainConfig, source: Source, require_labels: bool = True, name: str | None = None
) -> list[Example]:
    """Read a data file or dataset the way the run's task and field options say."""
    if config.task == "sequence":
        fields = (config.text_field, config.label_field)
        return read_sequence_examples(source, *fields, config.text_pair, require_labels, name)
    return read_token_examples(source, config.tokens_field, config.tags_field, require_labels, name)


def subsample(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """A seeded random subset of `limit` examples, in their original order (all of them if fewer)."""
    if limit is None or limit >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def label_map_for(config: TrainConfig, train_examples: list[Example]) -> LabelMap:
    """The label set from `--labels` if given, else from the training data."""
    if config.labels:
        return LabelMap.from_names(config.labels)
    if config.task == "sequence":
        return LabelMap.from_labels([e.label for e in train_examples])
    return LabelMap.for_tags([e.tags for e in train_examples])


@dataclass
class TaskData:
    config: TrainConfig
    labels: LabelMap
    encoder: Encoder

    def read(self, source: Source, require_labels: bool = True, name: str | None = None) -> list[Example]:
        return read_examples(self.config, source, require_labels, name)

    def label_ids(self, examples: list[Example], source: str) -> list[int] | list[list[int]]:
        if self.config.task == "sequence":
            return [self.labels.index(e.label, source) for e in examples]
        return [[self.labels.index(tag, source) for tag in e.tags] for e in examples]

    def encode(self, examples: list[Example], source: str, with_labels: bool = True) -> list[dict]:
        ids = self.label_ids(examples, source) if with_labels else None
        if self.config.task == "sequence":
            return self.encoder.encode_sequences(examples, ids, source)
        alignments = [self.encoder.align(e.tokens) for e in examples]
        return self.encoder.encode_tokens(alignments, ids, source)
