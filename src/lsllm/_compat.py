"""Every use of a private or version-specific API of torch, transformers, peft or uvicorn, in one place.

Each entry names the versions it was written against (torch 2.13, transformers 5.24, peft 0.21, uvicorn
0.54); tests/test_compat.py checks each one, so an upgrade that breaks one fails loudly there, and the
fix lands here and nowhere else.
"""

from __future__ import annotations

import importlib.abc
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads lazily: `import lsllm` uses this module and must stay fast
    from torch import nn

# --- torch -------------------------------------------------------------------------------------------


def cpu_bf16_units() -> bool | None:
    """Whether the CPU has AVX-512 BF16 or AMX tiles, as torch's own dispatcher sees it; None if torch no
    longer answers. torch 2.4-2.13: the private `torch.cpu._is_avx512_bf16_supported` and
    `_is_amx_tile_supported`."""
    import torch

    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    probes = [getattr(torch.cpu, name, None) for name in names]
    if not all(callable(probe) for probe in probes):
        return None
    return any(probe() for probe in probes)


def quantize_linear_int8(model: nn.Module, names: list[str]) -> bool:
    """Give the named linear layers int8 weights, one scale per output channel, activations quantised per
    call; False if torch no longer has this. torch 1.x-2.13: `torch.ao.quantization.quantize_dynamic`,
    deprecated in favour of torchao (which ran ten times slower on CPU without torch.compile)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice
        try:
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        except ImportError:
            return False
        quantize_dynamic(model, dict.fromkeys(names, per_channel_dynamic_qconfig), inplace=True)
    return True


# --- transformers ------------------------------------------------------------------------------------


def attention_implementation(config: Any) -> str:
    """The attention backend a loaded model runs ("sdpa", "eager", ...). transformers 5.x keeps it in
    the private `config._attn_implementation`."""
    return config._attn_implementation


def with_layer_attention_mask(layer: nn.Module, kwargs: dict, mask: Any) -> dict:
    """A decoder layer's call arguments with its attention mask replaced. transformers 5.x decoders
    (Llama, Qwen2, Mistral, Gemma, ...) hand each layer the mask as the keyword `attention_mask` and pass
    their forward's extra keywords on to every layer, which is how a per-layer mask reaches it."""
    if "attention_mask" not in kwargs:
        raise TypeError(f"{type(layer).__name__} is not given its mask as the keyword attention_mask")
    return {**kwargs, "attention_mask": mask}


def decoder_layers(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's decoder layers in order. transformers 5.x decoders keep them in `.layers`."""
    layers = getattr(backbone, "layers", None)
    if layers is None:
        raise TypeError(f"{type(backbone).__name__} keeps no decoder layers in .layers")
    return list(layers)


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Non-reentrant checkpointing (works with a frozen embedding under LoRA). transformers 5.x renamed
    `gradient_checkpointing_enable` to `activation_checkpointing_enable`; either is taken."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable({"use_reentrant": False})


def forget_gguf_quantization(config: Any) -> None:
    """A model loaded from GGUF is dequantised, but its config still says `quantization_config`, and
    transformers 5.x then refuses to save it; dropping the attribute lets it save as a plain model."""
    del config.quantization_config


def forget_deepspeed_zero3() -> None:
    """Let `from_pretrained` load models whole again after DeepSpeed ZeRO-3 trained in this process. While
    ZeRO-3's config is registered, transformers partitions every model it loads across all processes (a
    collective), which hangs when one process loads a run alone. transformers 4.30-5.24:
    `integrations.deepspeed.unset_hf_deepspeed_config`, written for tests."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds a module as usual, and runs a hook right after the module has executed."""

    def __init__(self, name: str, hook: Callable[[], None]) -> None:
        self.name, self.hook = name, hook

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        spec = next(s for f in sys.meta_path if (s := f.find_spec(name, path, target)) is not None)
        execute = spec.loader.exec_module

        def exec_module(module) -> None:
            execute(module)
            self.hook()

        spec.loader.exec_module = exec_module
        return spec


def run_after_import(module: str, hook: Callable[[], None]) -> None:
    """Run `hook` once `module` has been imported: now if it already is, else right after its import.
    Used to register lsllm with transformers' Auto model classes without importing them (5 s) up front;
    it wraps the module's loader (`spec.loader.exec_module`), which Python's import system allows."""
    if module in sys.modules:
        hook()
    else:
        sys.meta_path.insert(0, _AfterImport(module, hook))


# --- peft --------------------------------------------------------------------------------------------

# peft 0.18-0.21 keeps a fully trained module of `modules_to_save` under this prefix, beside an untrained
# copy of the original.
TRAINED_HEAD_PREFIX = "head.modules_to_save.default."


def lora_dropouts(model: nn.Module) -> Iterator[nn.ModuleDict]:
    """The dropout modules on LoRA's input path, per layer: peft 0.18-0.21 keeps them in `lora_dropout`."""
    from torch import nn

    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, nn.ModuleDict):
            yield dropouts


def merge_injected_lora(model: nn.Module) -> None:
    """Fold LoRA layers added by `peft.inject_adapter_in_model` into their base layers, in place. peft's
    own `merge_and_unload` needs a PeftModel wrapper; this uses its tuner layers' `merge` and
    `get_base_layer` (peft 0.18-0.21) and drops the `peft_config` the injection left on the model."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config


# --- uvicorn -----------------------------------------------------------------------------------------


def h11_protocol_with_head_timeout(head_timeout_s: float, detail: str) -> type:
    """uvicorn's HTTP/1.1 connection class with a deadline on each request's head: a client that has not
    sent a whole request line and headers within `head_timeout_s` of connecting, or of its previous answer,
    is disconnected, with a 408 carrying `detail` if it had sent part of one; uvicorn alone waits forever.
    uvicorn 0.30-0.54: subclasses `H11Protocol` and reads its `cycle`, `conn`, `loop` and `transport`."""
    import json

    from uvicorn.protocols.http.h11_impl import H11Protocol

    body = json.dumps({"detail": detail}).encode()
    answer = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body

    class TimedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            self._head_timer = None
            super().connection_made(transport)
            self._arm_head_timer()

        def on_response_complete(self) -> None:
            self._arm_head_timer()  # before uvicorn starts the next pipelined request, with a new cycle
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

        def _arm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(head_timeout_s, self._head_timed_out, self.cycle)

        def _head_timed_out(self, cycle) -> None:
            self._head_timer = None
            if self.cycle is not cycle or self.transport.is_closing():
                return  # a new request began in time (each has its own cycle), or the connection is closed
            if self.conn.trailing_data[0]:  # part of a request line or headers: say why before closing
                self.transport.write(answer)
            self.transport.close()

    return TimedH11Protocol
