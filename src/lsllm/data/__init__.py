"""Data readers for tables and CoNLL files, and the label maps built from them."""

from lsllm.data.labels import LabelMap
from lsllm.data.readers import (
    SequenceExample,
    TokenExample,
    normalize_tags,
    read_records,
    read_sequence_examples,
    read_token_examples,
)

__all__ = [
    "LabelMap",
    "SequenceExample",
    "TokenExample",
    "normalize_tags",
    "read_records",
    "read_sequence_examples",
    "read_token_examples",
]
