"""The one set of input checks that the Python API, the CLI and the HTTP service share."""

from __future__ import annotations

import pytest

from lsllm.errors import LsllmError
from lsllm.predictions import check_input, check_top_k


@pytest.mark.parametrize(
    ("item", "task", "pair", "expected"),
    [
        ("a film", "sequence", False, "a film"),
        (["a film", "a plot"], "sequence", True, ("a film", "a plot")),
        ("John Smith", "token", False, "John Smith"),
        (("John", "Smith"), "token", False, ["John", "Smith"]),
    ],
)
def test_a_good_input_comes_back_as_the_run_takes_it(item, task, pair, expected):
    assert check_input(item, 1, task, pair) == expected


@pytest.mark.parametrize(
    ("item", "task", "pair", "message"),
    [
        ("  ", "sequence", False, "input 3 is empty; give a non-empty text"),
        (["a", "b"], "sequence", False, "input 3 is a list; this run takes one text per input"),
        (
            "a film",
            "sequence",
            True,
            "input 3: this run was trained on text pairs; send \\[text, text_pair\\]",
        ),
        (["a", 1], "sequence", True, "input 3 must hold texts"),
        ("\u200b \t", "token", False, "input 3 has no words; give a non-empty text"),
        (["John", " "], "token", False, "input 3 has a blank word at position 2"),
        ([], "token", False, "input 3 has no words"),
        (7, "token", False, "input 3 must be a text or a list of words"),
    ],
)
def test_a_bad_input_is_a_one_line_error_naming_it(item, task, pair, message):
    with pytest.raises(LsllmError, match=message):
        check_input(item, 3, task, pair)


@pytest.mark.parametrize(
    ("top_k", "task", "message"), [(2, "token", "sequence runs only"), (0, "sequence", "at least 1")]
)
def test_top_k_is_checked(top_k, task, message):
    with pytest.raises(LsllmError, match=message):
        check_top_k(top_k, task)
    check_top_k(None, task)
