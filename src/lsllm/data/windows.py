"""Token ranges for predicting a text longer than --max-length: overlapping windows cut between words."""

from __future__ import annotations

from bisect import bisect_left, bisect_right

OVERLAP = 4  # each window starts about 1/OVERLAP of a window before the previous one ends


def cut_windows(word_starts: list[int], n_tokens: int, size: int) -> list[tuple[int, int]]:
    """Ranges [start, end) of at most `size` tokens covering all `n_tokens`, each overlapping the one
    before by about size / OVERLAP tokens. Windows begin and end where a word starts (`word_starts`: the
    first token of each word), unless one word alone is longer than a window."""
    if n_tokens <= size:
        return [(0, n_tokens)]
    cuts = sorted({*word_starts, n_tokens} - {0})
    windows, start = [], 0
    while True:
        end = _window_end(cuts, start, size)
        windows.append((start, end))
        if end >= n_tokens:
            return windows
        # The next window starts at the first word within the overlap whose window reaches past this
        # one's end; one that ends here too would lie inside this window and add nothing but work.
        index = bisect_left(cuts, max(start + 1, end - size // OVERLAP))
        while cuts[index] < end and _window_end(cuts, cuts[index], size) <= end:
            index += 1
        start = min(cuts[index], end)


def _window_end(cuts: list[int], start: int, size: int) -> int:
    """Where a window from `start` ends: at the last cut it can hold, or after `size` tokens if none."""
    fitting = bisect_right(cuts, start + size) - 1
    return cuts[fitting] if fitting >= 0 and cuts[fitting] > start else start + size


def best_windows(
    word_starts: list[int | None], windows: list[tuple[int, int]], n_tokens: int, causal: bool
) -> list[int | None]:
    """For each word, the index of the window where its first token sees the most context: the one
    where it lies farthest from a cut (the text's own start and end are no cut). A causal model sees
    nothing to its right, so there only the distance from the window's start counts. Ties go to the
    earlier window."""
    starts = [start for start, _ in windows]
    chosen: list[int | None] = []
    for token in word_starts:
        if token is None:
            chosen.append(None)
            continue
        best, best_room = None, -1
        for index in range(bisect_right(starts, token) - 1, -1, -1):
            start, end = windows[index]
            if end <= token:
                break
            left = token - start if start > 0 else n_tokens
            right = n_tokens if causal or end >= n_tokens else end - 1 - token
            if min(left, right) >= best_room:  # walking backwards, so >= prefers the earlier window
                best, best_room = index, min(left, right)
        chosen.append(best)
    return chosen
