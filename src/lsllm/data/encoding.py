"""Examples -> token ids, with word-level tags aligned to each word's first sub-token."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain, repeat

from lsllm.config import TrainConfig
from lsllm.data.examples import SequenceExample
from lsllm.data.prompts import Prompt
from lsllm.data.windows import best_windows, cut_windows

IGNORE_INDEX = -100
logger = logging.getLogger(__name__)


class WindowWords(Sequence):
    """The `word_tokens` of one window of a long input: None for every word except the run of words the
    window predicts. Held as that run alone, since a full list per window would take words x windows
    memory (a 200,000-word text in 16-token windows: billions of entries). Reads, iterates and compares
    like the list it stands for."""

    def __init__(self, length: int, first: int, tokens: list[int | None]) -> None:
        self._length, self._first, self._tokens = length, first, tokens

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("word index out of range")
        inside = index - self._first
        return self._tokens[inside] if 0 <= inside < len(self._tokens) else None

    def __iter__(self) -> Iterator[int | None]:
        after = self._length - self._first - len(self._tokens)
        return chain(repeat(None, self._first), self._tokens, repeat(None, after))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, WindowWords)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a list, so unhashable like one

    def __repr__(self) -> str:
        return f"WindowWords({self._length} words, {self._first}..: {self._tokens!r})"

    def owned(self) -> Iterator[tuple[int, int]]:
        return ((self._first + i, t) for i, t in enumerate(self._tokens) if t is not None)


@dataclass
class WordAlignment:
    """Token ids for one text, and for each word the index of the token that speaks for it."""

    input_ids: list[int]
    word_tokens: list[int | None] | WindowWords
    truncated: bool

    def owned_words(self) -> Iterator[tuple[int, int]]:
        """(word, token) for each word that has a token here, in word order; for a window of a long
        input this takes time for the window's own words only."""
        if isinstance(self.word_tokens, WindowWords):
            return self.word_tokens.owned()
        return ((word, token) for word, token in enumerate(self.word_tokens) if token is not None)

    @property
    def first_token_words(self) -> dict[int, int]:
        """Token index -> the word it carries the label for (a token speaks for one word at most)."""
        owners: dict[int, int] = {}
        for word, token in self.owned_words():
            owners.setdefault(token, word)
        return owners


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
    word_tokens = first_tokens(text, spans, encoding["offset_mapping"])
    return WordAlignment(encoding["input_ids"], word_tokens, truncated=None in word_tokens)


def first_tokens(text: str, spans: list[tuple[int, int]], offsets: list[tuple[int, int]]) -> list[int | None]:
    """For each word span, the index of the first token whose characters overlap it (None if none does)."""
    char_word = [-1] * len(text)
    for word, (start, end) in enumerate(spans):
        char_word[start:end] = [word] * (end - start)
    word_tokens: list[int | None] = [None] * len(spans)
    for token, (start, end) in enumerate(offsets):
        for word in sorted({char_word[c] for c in range(start, end)} - {-1}):
            if word_tokens[word] is None:
                word_tokens[word] = token
    return word_tokens


class Encoder:
    """Turns examples into model inputs for one tokenizer and length limit, and reports truncation once."""

    def __init__(self, tokenizer, max_length: int, prompt: Prompt | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.prompt = prompt
        self._reported: set[str] = set()

    @classmethod
    def for_config(cls, tokenizer, config: TrainConfig) -> Encoder:
        """The encoder a run uses: its tokenizer, its max length and, if it has one, its prompt."""
        prompt = Prompt(config.template, config.chat_template, tokenizer) if config.template else None
        return cls(tokenizer, config.max_length, prompt)

    def encode_sequences(
        self, examples: list[SequenceExample], targets: list | None, source: str
    ) -> list[dict]:
        """Token ids of each text, cut to its first max_length tokens (a pair: the longer text loses its end
        first); a cut one is marked `"truncated": True`."""
        features, truncated = [], 0
        for i, example in enumerate(examples):
            if self.prompt is not None:
                ids, cut = self.prompt.encode(example, self.max_length)
            else:
                ids, cut = self._encode_plain(example)
            feature = {"input_ids": ids, "truncated": True} if cut else {"input_ids": ids}
            truncated += cut
            if targets is not None:
                feature["labels"] = targets[i]
            features.append(feature)
        self._report(truncated, len(examples), source)
        return features

    def _encode_plain(self, example: SequenceExample) -> tuple[list[int], bool]:
        ids = self.tokenizer(example.text, example.text_pair, truncation=False)["input_ids"]
        if len(ids) <= self.max_length:
            return ids, False
        cut = self.tokenizer(example.text, example.text_pair, truncation=True, max_length=self.max_length)
        return cut["input_ids"], True

    def align(self, words: list[str]) -> WordAlignment:
        text, spans = join_words(words)
        return self.align_text(text, spans)

    def align_text(self, text: str, spans: list[tuple[int, int]]) -> WordAlignment:
        return align_words(self.tokenizer, text, spans, self.max_length)

    def windows(self, text: str, spans: list[tuple[int, int]], causal: bool) -> list[WordAlignment]:
        """Prediction's encoding: the whole text, in windows of at most max_length tokens (one window,
        identical to `align_text`, when it fits). Each word's token is set in exactly one window, the one
        that gives it the most context; see lsllm.data.windows."""
        prefix, suffix = self._special_tokens
        encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoding["input_ids"]
        starts = first_tokens(text, spans, encoding["offset_mapping"])
        size = max(1, self.max_length - len(prefix) - len(suffix))
        ranges = cut_windows([t for t in starts if t is not None], len(ids), size)
        owners = best_windows(starts, ranges, len(ids), causal)
        if len(ranges) == 1:
            tokens = [None if t is None else t + len(prefix) for t in starts]
            return [WordAlignment(prefix + ids + suffix, tokens, truncated=False)]
        owned: list[list[int]] = [[] for _ in ranges]  # the words each window predicts, in order
        for word, owner in enumerate(owners):
            if owner is not None:
                owned[owner].append(word)
        windows = []
        for (start, end), words in zip(ranges, owned, strict=True):
            first = words[0] if words else 0
            tokens: list[int | None] = [None] * (words[-1] + 1 - first if words else 0)
            for word in words:
                tokens[word - first] = starts[word] + len(prefix) - start  # type: ignore[operator]
            word_tokens = WindowWords(len(starts), first, tokens)
            windows.append(WordAlignment(prefix + ids[start:end] + suffix, word_tokens, truncated=False))
        return windows

    @cached_property
    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The ids the tokenizer puts before and after every text (a BOS, an EOS), found with a probe."""
        bare = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        full = self.tokenizer("a")["input_ids"]
        for i in range(len(full) - len(bare) + 1):
            if full[i : i + len(bare)] == bare:
                return full[:i], full[i + len(bare) :]
        return [], []

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
