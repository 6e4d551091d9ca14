"""Tiny random decoders of several architectures, with a small byte-level BPE tokenizer, for fast tests."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

CORPUS = [
    "the film was good and the acting was great",
    "the plot was bad and the ending was awful",
    "John Smith and Mary Jones visited Paris and Berlin last week",
    "Acme Corp opened an office in New York near London",
    "what a wonderful , lovely , terrible , boring movie !",
]

SIZES = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2)
ARCHITECTURES = {
    "llama": lambda vocab, layers=2: LlamaConfig(
        vocab_size=vocab, max_position_embeddings=256, num_hidden_layers=layers, **SIZES
    ),
    "qwen2": lambda vocab, layers=2: Qwen2Config(
        vocab_size=vocab, max_position_embeddings=256, num_hidden_layers=layers, **SIZES
    ),
    "mistral": lambda vocab, layers=2: MistralConfig(
        vocab_size=vocab, max_position_embeddings=256, sliding_window=None, num_hidden_layers=layers, **SIZES
    ),
}


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>", pad_token="<pad>")


def build_tiny_model(arch: str, folder: Path, seed: int = 0, layers: int = 2) -> Path:
    """Save a random `arch` model and tokenizer to `folder`, the way a user's local model folder looks."""
    byte_level_tokenizer().save_pretrained(folder)
    vocab = len(AutoTokenizer.from_pretrained(folder))  # some families rebuild the tokenizer and add tokens
    torch.manual_seed(seed)
    AutoModel.from_config(ARCHITECTURES[arch](vocab, layers)).save_pretrained(folder)
    return folder


def build_tiny_causal_lm(folder: Path, tied: bool, seed: int = 0) -> Path:
    """A random Llama with its language-model head (tied to the embeddings or not), as a user's model
    folder holds it: what --head-init label-words reads its rows from."""
    byte_level_tokenizer().save_pretrained(folder)
    vocab = len(AutoTokenizer.from_pretrained(folder))
    torch.manual_seed(seed)
    config = ARCHITECTURES["llama"](vocab)
    config.tie_word_embeddings = tied
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def build_small_model(folder: Path, seed: int = 0) -> Path:
    """A random Llama of width 256 with grouped keys and values (as Llama 3 has them): wide enough that its
    large activations dwarf the small ones, and that every linear layer splits into bitsandbytes' 4-bit
    blocks of 64 weights."""
    byte_level_tokenizer().save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(AutoTokenizer.from_pretrained(folder)),
        hidden_size=256,
        intermediate_size=704,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(folder)
    return folder
