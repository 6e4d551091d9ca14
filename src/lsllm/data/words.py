"""Raw text -> words with character offsets, split the way NER training data (CoNLL) is tokenised.

A word is a run of letters, digits, combining marks and underscores, where an inner period, hyphen or
apostrophe between two such characters keeps the run whole ("U.S.A", "well-known", "O'Neil", "3.5"), as
does a comma between digits ("1,000"). Three exceptions follow CoNLL: a possessive or contracted "'s" is
a word of its own ("Merkel", "'s"); letter-period abbreviations keep their final period ("U.S.",
"e.g."); and every Han, Hiragana or Katakana character is a word, as Chinese and Japanese NER data are
tagged per character. Any other character (punctuation, symbols, a whole emoji with its modifiers) is a
word by itself. Whitespace and invisible control or format characters (such as a zero-width space) only
separate words.
"""

from __future__ import annotations

import regex

_CJK = r"[\p{Han}\p{Hiragana}\p{Katakana}]"
_WORD_CHAR = rf"(?:(?!{_CJK})[\p{{L}}\p{{N}}\p{{M}}\p{{Pc}}])"
_APOSTROPHE = "['\u2019]"
# Joins the characters either side: a period, a hyphen, an apostrophe (unless it begins a final 's), or a
# comma between digits.
_JOINER = rf"(?:[.\-\u2010]|{_APOSTROPHE}(?![sS](?!{_WORD_CHAR}))|(?<=\p{{N}}),(?=\p{{N}}))"
_WORD = regex.compile(
    "|".join(
        [
            rf"(?={_CJK})\X",  # one CJK character (a grapheme: with any marks that follow it)
            rf"(?:(?!{_CJK})\p{{L}}\p{{M}}*\.){{2,}}(?!{_WORD_CHAR})",  # U.S., e.g.
            rf"{_WORD_CHAR}+(?:{_JOINER}{_WORD_CHAR}+)*",
            rf"{_APOSTROPHE}[sS](?!{_WORD_CHAR})",  # 's
            r"(?![\s\p{Cc}\p{Cf}])\X",  # any other visible character, a whole emoji sequence included
        ]
    )
)


def word_spans(text: str) -> list[tuple[int, int]]:
    """Start and end (Python string indices) of each word of raw text, in order; see the module docstring."""
    return [match.span() for match in _WORD.finditer(text)]
