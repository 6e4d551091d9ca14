"""Each private or version-specific API lsllm uses still answers as lsllm expects; a failure here names
the entry in lsllm/_compat.py to update for the new library version."""

from __future__ import annotations

import sys

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from transformers import AutoModel, LlamaConfig

from lsllm import _compat
from tests.helpers import lora_model


def test_torch_still_reports_the_cpus_bf16_units():
    assert _compat.cpu_bf16_units() in (True, False)


def test_torch_still_quantizes_linear_layers_to_int8_per_channel():
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    assert _compat.quantize_linear_int8(model, ["0"])
    assert type(model[0]) is torch.ao.nn.quantized.dynamic.Linear and type(model[1]) is nn.Linear


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_transformers_still_names_the_attention_backend(tiny_model, implementation):
    backbone = AutoModel.from_pretrained(tiny_model, attn_implementation=implementation)
    assert _compat.attention_implementation(backbone.config) == implementation


def test_transformers_still_enables_gradient_checkpointing(tiny_model):
    backbone = AutoModel.from_pretrained(tiny_model)
    _compat.enable_gradient_checkpointing(backbone)
    renamed = hasattr(type(backbone), "is_activation_checkpointing")  # transformers 5.x's name
    assert backbone.is_activation_checkpointing if renamed else backbone.is_gradient_checkpointing


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_transformers_still_hands_each_layer_its_mask_and_our_keyword(tiny_models, arch):
    """What layer-wise unmasking relies on: layers in `.layers`, each called with `attention_mask` and
    with the extra keywords given to the backbone's forward."""
    backbone = AutoModel.from_pretrained(tiny_models[arch])
    layers = _compat.decoder_layers(backbone)
    assert layers == list(backbone.layers) and len(layers) == backbone.config.num_hidden_layers
    seen = []

    def record(layer, args, kwargs):
        seen.append(_compat.with_layer_attention_mask(layer, kwargs, "replaced")["attention_mask"])
        seen.append(kwargs.pop("marker"))
        return args, kwargs

    for layer in layers:
        layer.register_forward_pre_hook(record, with_kwargs=True)
    ids = torch.tensor([[3, 4, 5]])
    backbone(input_ids=ids, attention_mask=torch.ones_like(ids), marker="passed on")
    assert seen == ["replaced", "passed on"] * len(layers)
    with pytest.raises(TypeError, match="keyword attention_mask"):
        _compat.with_layer_attention_mask(layers[0], {}, None)


def test_a_config_forgets_its_gguf_quantization():
    config = LlamaConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2)
    config.quantization_config = {"quant_method": "gguf"}
    _compat.forget_gguf_quantization(config)
    assert "quantization_config" not in config.to_dict()


def test_a_hook_runs_right_after_its_module_is_imported(tmp_path, monkeypatch):
    (tmp_path / "lsllm_probe_module.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    _compat.run_after_import(
        "lsllm_probe_module", lambda: seen.append(sys.modules["lsllm_probe_module"].VALUE)
    )
    assert seen == []
    import lsllm_probe_module  # noqa: F401

    assert seen == [1]
    _compat.run_after_import("lsllm_probe_module", lambda: seen.append("now"))  # imported: runs at once
    assert seen == [1, "now"]
    del sys.modules["lsllm_probe_module"]


def test_peft_still_keeps_the_trained_head_under_the_known_prefix(tiny_model):
    _, _, model = lora_model(tiny_model, "sequence", "causal")
    keys = model.get_base_model().state_dict()
    assert any(key.startswith(_compat.TRAINED_HEAD_PREFIX) for key in keys)


def test_peft_still_keeps_loras_dropout_per_layer(tiny_model):
    _, _, model = lora_model(tiny_model, "sequence", "causal")
    dropouts = list(_compat.lora_dropouts(model))
    linear_layers = sum(1 for name, m in model.named_modules() if hasattr(m, "lora_A"))
    assert len(dropouts) == linear_layers > 0


def test_injected_lora_merges_into_the_same_function(tiny_model):
    backbone = AutoModel.from_pretrained(tiny_model)
    inject_adapter_in_model(LoraConfig(r=4, target_modules=["q_proj", "v_proj"]), backbone)
    for name, parameter in backbone.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.5)
    ids = torch.tensor([[1, 2, 3, 4]])
    before = backbone(input_ids=ids).last_hidden_state
    _compat.merge_injected_lora(backbone)
    after = backbone(input_ids=ids).last_hidden_state
    assert not any("lora" in name for name, _ in backbone.named_modules())
    assert torch.allclose(before, after, atol=1e-5)


def test_uvicorn_still_has_the_connection_class_the_head_timeout_extends():
    from uvicorn.protocols.http.h11_impl import H11Protocol

    timed = _compat.h11_protocol_with_head_timeout(1.0, "too slow")
    assert issubclass(timed, H11Protocol)
    for name in ("connection_made", "on_response_complete", "connection_lost"):
        assert callable(getattr(H11Protocol, name))


def test_transformers_still_forgets_a_deepspeed_zero3_config(monkeypatch):
    from transformers.integrations import deepspeed

    class ZeroThree:
        def is_zero3(self) -> bool:
            return True

    config = ZeroThree()
    monkeypatch.setattr(deepspeed, "_hf_deepspeed_config_weak_ref", lambda: config)
    assert deepspeed.is_deepspeed_zero3_enabled()
    _compat.forget_deepspeed_zero3()
    assert not deepspeed.is_deepspeed_zero3_enabled()
