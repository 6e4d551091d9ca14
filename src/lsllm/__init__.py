"""lsllm: label-supervised fine-tuning of decoder LLMs for text classification and word tagging."""

import importlib

from lsllm import _compat

# Resolved on first use, so that `lsllm --help` does not pay for importing torch and transformers.
_EXPORTS = {
    "Classifier": "lsllm.inference",
    "load": "lsllm.inference",
    "LsllmError": "lsllm.errors",
    "TrainConfig": "lsllm.config",
    "TrainResult": "lsllm.training",
    "train": "lsllm.training",
}

__all__ = sorted([*_EXPORTS, "register"])


def register() -> None:
    """Make transformers' AutoConfig and AutoModelFor*Classification (and so its pipelines) load lsllm
    exports. Importing lsllm does this by itself once transformers loads its Auto model classes."""
    from lsllm.modeling.hf import register as register_model_type

    register_model_type()


# Registering needs torch and transformers (seconds), so it waits until transformers loads its Auto model
# classes: `import lsllm` and `lsllm --help` stay fast.
_compat.run_after_import("transformers.models.auto.modeling_auto", register)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lsllm' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
