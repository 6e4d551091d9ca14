"""Raw text -> words the way CoNLL data is split, with spans that slice the original text exactly."""

from __future__ import annotations

import unicodedata

import pytest

from lsllm.data.words import word_spans


def words(text: str) -> list[str]:
    return [text[start:end] for start, end in word_spans(text)]


SPLITS = [
    ("Merkel visited Paris.", ["Merkel", "visited", "Paris", "."]),
    ("(Berlin), 'Rome'!", ["(", "Berlin", ")", ",", "'", "Rome", "'", "!"]),
    ("O'Neil met the U.S. team", ["O'Neil", "met", "the", "U.S.", "team"]),
    ("a well-known e.g. U.S.A", ["a", "well-known", "e.g.", "U.S.A"]),
    ("Merkel's and it\u2019s James'", ["Merkel", "'s", "and", "it", "\u2019s", "James", "'"]),
    ("3.5 km for 1,000 $, 10:30", ["3.5", "km", "for", "1,000", "$", ",", "10", ":", "30"]),
    ("pre- and user_name@x.org", ["pre", "-", "and", "user_name", "@", "x.org"]),
    ("Müller aß Spaß in Zürich", ["Müller", "aß", "Spaß", "in", "Zürich"]),
    ("Jose\u0301 Mu\u0308ller", ["Jose\u0301", "Mu\u0308ller"]),  # combining accents stay in the word
    ("東京に行く", ["東", "京", "に", "行", "く"]),
    ("서울에 갔다", ["서울에", "갔다"]),
    ("I ❤️ NY 👍🏽! 👨\u200d👩\u200d👧 🇫🇷", ["I", "❤️", "NY", "👍🏽", "!", "👨\u200d👩\u200d👧", "🇫🇷"]),
    ("  tabs\tand\nnew\r\nlines  ", ["tabs", "and", "new", "lines"]),
    ("zero\u200bwidth\u00a0space", ["zero", "width", "space"]),
    ("", []),
    (" \t\n", []),
]


@pytest.mark.parametrize(("text", "expected"), SPLITS)
def test_raw_text_is_split_like_conll_data(text, expected):
    assert words(text) == expected


@pytest.mark.parametrize("text", [text for text, _ in SPLITS])
def test_word_spans_slice_the_original_text_and_skip_only_blanks(text):
    spans = word_spans(text)
    ends = [0, *(end for _, end in spans)]
    starts = [*(start for start, _ in spans), len(text)]
    for (start, end), previous_end in zip(spans, ends, strict=False):
        assert previous_end <= start < end
    gaps = "".join(text[end:start] for end, start in zip(ends, starts, strict=True))
    assert all(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in gaps)
