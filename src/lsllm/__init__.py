"""lsllm: label-supervised fine-tuning of decoder LLMs for text classification and word tagging."""

import importlib

# Resolved on first use, so that `lsllm --help` does not pay for importing torch and transformers.
_EXPORTS = {
    "Classifier": "lsllm.inference",
    "load": "lsllm.inference",
    "LsllmError": "lsllm.errors",
    "TrainConfig": "lsllm.config",
    "TrainResult": "lsllm.training",
    "train": "lsllm.training",
}

__all__ = sorted(_EXPORTS)


def _register_with_transformers() -> None:
    """Let AutoModelFor*Classification and pipelines load exported lsllm folders, without remote code."""
    from lsllm.hf_model import register

    register()


_register_with_transformers()


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lsllm' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
