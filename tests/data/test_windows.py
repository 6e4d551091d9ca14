"""Long token inputs: where windows are cut, and which window predicts each word."""

from __future__ import annotations

import itertools

from lsllm.data.windows import best_windows, cut_windows


def test_windows_cover_every_token_and_cut_between_words():
    starts = list(range(0, 100, 3))  # a word every 3 tokens
    windows = cut_windows(starts, 100, 16)
    assert windows[0][0] == 0 and windows[-1][1] == 100
    for (start, end), (next_start, _) in itertools.pairwise(windows):
        assert start < next_start < end  # they overlap, and move on
        assert next_start in starts and end in starts
    assert all(end - start <= 16 for start, end in windows)
    assert cut_windows(starts, 16, 16) == [(0, 16)]


def test_a_word_longer_than_a_window_is_cut_inside():
    windows = cut_windows([0, 40], 50, 16)
    assert windows[0] == (0, 16) and windows[-1][1] == 50
    assert all(end - start <= 16 for start, end in windows)


def test_each_word_goes_to_the_window_where_it_sees_most():
    windows = [(0, 16), (12, 28)]
    # token 13: 2 tokens from the first window's cut, 1 from the second's start
    assert best_windows([13, 15, 20, None], windows, 28, causal=False) == [0, 1, 1, None]
    # causal: only what comes before counts, and the first window starts at the text's start
    assert best_windows([13, 15, 20, None], windows, 28, causal=True) == [0, 0, 1, None]
