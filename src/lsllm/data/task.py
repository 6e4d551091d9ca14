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
    if config.task == "token":
        return read_token_examples(source, config.tokens_field, config.tags_field, require_labels, name)
    return read_sequence_examples(
        source,
        config.text_field,
        config.label_field,
        pair=config.text_pair,
        require_labels=require_labels,
        numeric=config.task == "regression",
        label_columns=config.label_columns,
        name=name,
    )


def subsample(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """A seeded random subset of `limit` examples, in their original order (all of them if fewer)."""
    if limit is None or limit >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def label_map_for(config: TrainConfig, train_examples: list[Example]) -> LabelMap:
    """The label set and its shape: a number for regression; several labels per text when asked for or
    when any training label is a list; the names from `--labels` or `--label-columns` if given, else from
    the training data."""
    if config.task == "regression":
        return LabelMap.for_regression(config.label_field)
    if config.task == "token":
        if config.labels:
            return LabelMap.from_names(config.labels)
        return LabelMap.for_tags([e.tags for e in train_examples])
    labels = [e.label for e in train_examples]
    multi = config.multi_label or bool(config.label_columns) or any(isinstance(v, list) for v in labels)
    shape = "multi" if multi else "single"
    if config.labels or config.label_columns:
        return LabelMap.from_names(config.labels or config.label_columns, shape)
    if multi:
        return LabelMap.for_label_lists(v if isinstance(v, list) else [v] for v in labels)
    return LabelMap.from_labels(labels)


@dataclass
class TaskData:
    config: TrainConfig
    labels: LabelMap
    encoder: Encoder

    def read(self, source: Source, require_labels: bool = True, name: str | None = None) -> list[Example]:
        return read_examples(self.config, source, require_labels, name)

    def targets(self, examples: list[Example], source: str) -> list:
        """What the head learns for each example (LabelMap.target); for token runs, one tag id per word."""
        if self.config.task == "token":
            return [[self.labels.index(tag, source) for tag in e.tags] for e in examples]
        return [self.labels.target(e.label, source) for e in examples]

    def encode(self, examples: list[Example], source: str, with_labels: bool = True) -> list[dict]:
        targets = self.targets(examples, source) if with_labels else None
        if self.config.task != "token":
            return self.encoder.encode_sequences(examples, targets, source)
        alignments = [self.encoder.align(e.tokens) for e in examples]
        return self.encoder.encode_tokens(alignments, targets, source)
