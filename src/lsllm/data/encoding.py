"""Examples -> token ids, with word-level tags aligned to each word's first sub-token."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from lsllm.data.readers import SequenceExample

IGNORE_INDEX = -100
logger = logging.getLogger("lsllm")


@dataclass
class WordAlignment:
    """Token ids for one text, and for each word the index of the token that speaks for it."""

    input_ids: list[int]
    word_tokens: list[int | None]
    truncated: bool

    @property
    def first_token_words(self) -> dict[int, int]:
        """Token index -> the word it carries the label for (a token speaks for one word at most)."""
        owners: dict[int, int] = {}
        for word, token in enumerate(self.word_tokens):
            if token is not None:
                owners.setdefault(token, word)
        return owners


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the whitespace-separated words of raw text."""
    return [match.span() for match in re.finditer(r"\S+", text)]


def join_words(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join pre-split words with single spaces, remembering where each one lands."""
    spans, start = [], 0
    for word in words:
        spans.append((start, start + len(word)))
        start += len(word) + 1
    return " ".join(words), spans


def align_words(tokenizer, text: str, spans: list[tuple[int, int]], max_length: int) -> WordAlignment:
    """Tokenize `text` and map every word span to the first token that overlaps it."""
    encoding = tokenizer(
        text,
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=True,
        return_overflowing_tokens=False,
    )
    char_word = [-1] * len(text)
    for word, (start, end) in enumerate(spans):
        char_word[start:end] = [word] * (end - start)
    word_tokens: list[int | None] = [None] * len(spans)
    for token, (start, end) in enumerate(encoding["offset_mapping"]):
        for word in sorted({char_word[c] for c in range(start, end)} - {-1}):
            if word_tokens[word] is None:
                word_tokens[word] = token
    return WordAlignment(encoding["input_ids"], word_tokens, truncated=None in word_tokens)


class Encoder:
    """Turns examples into model inputs for one tokenizer and length limit, and reports truncation once."""

    def __init__(self, tokenizer, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._reported: set[str] = set()

    def encode_sequences(
        self, examples: list[SequenceExample], label_ids: list[int] | None, source: str
    ) -> list[dict]:
        features, truncated = [], 0
        for i, example in enumerate(examples):
            ids = self.tokenizer(example.text, example.text_pair, truncation=False)["input_ids"]
            if len(ids) > self.max_length:
                truncated += 1
                ids = self.tokenizer(
                    example.text, example.text_pair, truncation=True, max_length=self.max_length
                )["input_ids"]
            feature = {"input_ids": ids}
            if label_ids is not None:
                feature["labels"] = label_ids[i]
            features.append(feature)
        self._report(truncated, len(examples), source)
        return features

    def align(self, words: list[str]) -> WordAlignment:
        text, spans = join_words(words)
        return self.align_text(text, spans)

    def align_text(self, text: str, spans: list[tuple[int, int]]) -> WordAlignment:
        return align_words(self.tokenizer, text, spans, self.max_length)

    def encode_tokens(
        self, alignments: list[WordAlignment], tag_ids: list[list[int]] | None, source: str
    ) -> list[dict]:
        features = []
        for i, alignment in enumerate(alignments):
            feature = {"input_ids": alignment.input_ids}
            if tag_ids is not None:
                labels = [IGNORE_INDEX] * len(alignment.input_ids)
                for token, word in alignment.first_token_words.items():
                    labels[token] = tag_ids[i][word]
                feature["labels"] = labels
            features.append(feature)
        self._report(sum(a.truncated for a in alignments), len(alignments), source)
        return features

    def _report(self, truncated: int, total: int, source: str) -> None:
        if truncated and source not in self._reported:
            self._reported.add(source)
            logger.warning(
                "%d of %d inputs in %s are longer than --max-length %d tokens and were truncated; "
                "raise --max-length to keep them whole",
                truncated,
                total,
                source,
                self.max_length,
            )
