"""lsllm: label-supervised fine-tuning of decoder LLMs for text classification and word tagging."""

import importlib
import importlib.abc
import sys

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


# Exported folders load with transformers' Auto classes once lsllm's model type is registered with them.
# Registering needs torch and transformers (seconds), so it waits until transformers loads its Auto
# model classes: `import lsllm` and `lsllm --help` stay fast.
_AUTO_MODELS = "transformers.models.auto.modeling_auto"


def _register_with_transformers() -> None:
    from lsllm.hf_model import register

    register()


class _RegisterWhenAutoModelsLoad(importlib.abc.MetaPathFinder):
    """Finds transformers' Auto model module as usual, and registers lsllm right after it has run."""

    def find_spec(self, name, path, target=None):
        if name != _AUTO_MODELS:
            return None
        sys.meta_path.remove(self)
        spec = next(s for f in sys.meta_path if (s := f.find_spec(name, path, target)) is not None)
        load = spec.loader.exec_module

        def exec_module(module) -> None:
            load(module)
            _register_with_transformers()

        spec.loader.exec_module = exec_module
        return spec


if _AUTO_MODELS in sys.modules:
    _register_with_transformers()
else:
    sys.meta_path.insert(0, _RegisterWhenAutoModelsLoad())


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lsllm' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
