"""Each private or version-specific API lsllm uses still answers as lsllm expects; a failure here names
the entry in lsllm/_compat.py to update for the new library version."""

from lsllm import _compat


def test_torch_still_reports_the_cpus_bf16_units():
    assert _compat.cpu_bf16_units() in (True, False)
