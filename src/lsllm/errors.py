"""The one exception type lsllm raises for problems a user can fix."""


class LsllmError(Exception):
    """A problem with the user's input or environment; the message names the problem and the fix."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """The gist of a library's error for a one-line message: its first line, cut to `limit` characters."""
    return str(error).splitlines()[0][:limit] if str(error) else type(error).__name__
