"""Masked next-token prediction (MNTP, from LLM2Vec) before supervised training.

A decoder was pretrained to read left to right; once its mask is removed, every token suddenly sees text it
never learnt to use. MNTP teaches it: some input tokens are replaced by a mask token, and each one is
predicted from the state of the token before it (where a decoder's language-model head reads its next
word), now that that state sees the whole sentence. lsllm runs it on the run's own LoRA weights, which
supervised training then continues, so a run folder holds the same files with or without it.
"""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lsllm.config import TrainConfig
from lsllm.data.collate import Collator
from lsllm.data.encoding import IGNORE_INDEX

logger = logging.getLogger(__name__)


def mask_token_id(tokenizer) -> int:
    """The tokenizer's mask token, or (decoders have none) "_", as LLM2Vec uses, or else the pad token."""
    if tokenizer.mask_token_id is not None:
        return tokenizer.mask_token_id
    underscore = tokenizer("_", add_special_tokens=False)["input_ids"]
    return underscore[0] if len(underscore) == 1 else tokenizer.pad_token_id


def mask_tokens(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, ratio: float, mask_id: int, generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs with a random `ratio` of the real tokens masked, and the targets: the original token where
    masked, IGNORE_INDEX elsewhere. A text's first token is never masked: no state comes before it."""
    real = attention_mask.bool()
    has_predecessor = torch.zeros_like(real)
    has_predecessor[:, 1:] = real[:, :-1]
    chosen = (torch.rand(input_ids.shape, generator=generator) < ratio).to(real.device)
    chosen &= real & has_predecessor
    masked = input_ids.masked_fill(chosen, mask_id)
    return masked, input_ids.masked_fill(~chosen, IGNORE_INDEX)


def mntp_loss(model: nn.Module, lm_rows: torch.Tensor, masked, attention_mask, targets) -> torch.Tensor:
    """Cross-entropy of each masked token, predicted by the language-model head from the state before it;
    `model` is the LabelSupervisedModel (its LoRA layers injected), so padding and packing work as ever."""
    states = model.hidden_states(masked, attention_mask)[:, :-1]
    wanted = targets[:, 1:]
    picked = wanted != IGNORE_INDEX
    logits = states[picked].to(lm_rows.dtype) @ lm_rows.T
    return F.cross_entropy(logits.float(), wanted[picked])


def adapt_with_mntp(
    model: nn.Module,
    lm_rows: torch.Tensor,
    train_set,
    collator: Collator,
    config: TrainConfig,
    mask_id: int,
    log: Path | None,
    bf16: bool,
) -> list[float]:
    """`config.mntp_steps` optimiser steps of MNTP on the LoRA weights of `model`, on random batches of
    the encoded training examples; returns the losses and logs them to `log` as "mntp_loss" records at
    step 0 (no `log`: another training process keeps it, and shows no progress bar)."""
    weights = [p for name, p in model.named_parameters() if p.requires_grad and "lora_" in name]
    optimizer = torch.optim.AdamW(weights, lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    device = weights[0].device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    rows = lm_rows.detach().to(device)
    losses = []
    model.train()
    steps = tqdm(range(1, config.mntp_steps + 1), desc="MNTP", unit="step", disable=log is None)
    for step in steps:
        picks = torch.randint(len(train_set), (config.batch_size,), generator=generator).tolist()
        batch = collator([{"input_ids": train_set[i]["input_ids"]} for i in picks])
        masked, targets = mask_tokens(
            batch["input_ids"], batch["attention_mask"], config.mntp_mask_ratio, mask_id, generator
        )
        if not (targets != IGNORE_INDEX).any():
            continue  # texts of one token each: nothing to predict in this batch
        with autocast:
            loss = mntp_loss(
                model, rows, masked.to(device), batch["attention_mask"].to(device), targets.to(device)
            )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        steps.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        if log is not None and (step % config.logging_steps == 0 or step == config.mntp_steps):
            with log.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": 0, "mntp_step": step, "mntp_loss": losses[-1]}) + "\n")
    if losses:
        logger.info("MNTP: %d steps, loss %.3f -> %.3f", len(losses), losses[0], losses[-1])
    return losses
