"""The one exception type lsllm raises for problems a user can fix."""


class LsllmError(Exception):
    """A problem with the user's input or environment; the message names the problem and the fix."""
