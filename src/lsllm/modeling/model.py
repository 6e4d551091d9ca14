"""The label-supervised model: a decoder backbone's final hidden states -> a linear head over the labels,
and the loss that fits the label shape."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lsllm import _compat
from lsllm.config import TrainConfig
from lsllm.data.encoding import IGNORE_INDEX
from lsllm.errors import LsllmError
from lsllm.modeling import quantization
from lsllm.modeling.attention import LAYER_MASK, backbone_attention, check_layerwise, unmask_layers
from lsllm.modeling.backbone import load_backbone, resolve_model
from lsllm.modeling.packing import PACKABLE_ATTENTION, padded_layout, plan_packing
from lsllm.modeling.pooling import pool


class LabelSupervisedModel(nn.Module):
    """Backbone without its language-model head, plus a head that maps hidden states to label logits.

    `shape` (lsllm.data.labels.SHAPES) picks the loss: cross-entropy for one class per text or word,
    binary cross-entropy on each label's sigmoid for several, mean squared error for a number.
    `class_weights`, if given, weigh cross-entropy's classes, or are binary cross-entropy's pos_weight.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_labels: int,
        task: str,
        pooling: str,
        packing: bool = True,
        bidirectional_layers: str | None = None,
        head_bias: bool = True,
        shape: str = "single",
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config
        self.task = task
        self.pooling = pooling
        self.packing = packing
        self.layerwise = bidirectional_layers is not None
        if self.layerwise:
            implementation = _compat.attention_implementation(self.config)
            if implementation not in PACKABLE_ATTENTION or not self.config.is_causal:
                raise LsllmError(
                    f"layer-wise unmasking needs a causal backbone with eager or sdpa attention, not"
                    f" {implementation}; pass --attn-implementation sdpa"
                )
            unmask_layers(backbone, bidirectional_layers)
        # The backbone's decoder-layer classes: FSDP shards each such layer as one unit (accelerate reads
        # them here when its config names none).
        self._no_split_modules = getattr(backbone, "_no_split_modules", None)
        self.shape = shape
        weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)  # training only: never saved
        self.head = nn.Linear(backbone.config.hidden_size, num_labels, bias=head_bias, dtype=torch.float32)
        # Start like transformers' own classification heads: small normal weights, zero bias. PyTorch's
        # default Linear init starts from larger logits and learned slower (SST-2 in bench/: 66.9% -> 75.3%).
        nn.init.normal_(self.head.weight, std=getattr(backbone.config, "initializer_range", 0.02))
        if head_bias:
            nn.init.zeros_(self.head.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        **_: object,
    ) -> dict[str, torch.Tensor]:
        """Logits, and with `labels` the mean loss: over this batch, or over `num_items_in_batch` labelled
        items, the count the Trainer passes for all the batches of one optimiser step in every process, so
        that accumulation and several processes weigh each labelled item alike."""
        hidden = self.hidden_states(input_ids, attention_mask)
        if self.task != "token":
            hidden = pool(hidden, attention_mask, self.pooling)
        logits = self.head(hidden.to(self.head.weight.dtype))
        output = {"logits": logits}
        if labels is not None:
            output["loss"] = self.loss(logits, labels, num_items_in_batch)
        return output

    def loss(
        self, logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """The shape's loss summed over the labelled items (for multi-label, each label of each text), with
        class weights if any, and divided by their count (see `forward`): balanced weights average 1 over
        the training labels, so weighing keeps the loss's scale. A regression target of exactly -100 would
        be left out of the count, which takes -100 for "no label"."""
        if self.shape == "regression":
            total = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype), reduction="sum")
        elif self.shape == "multi":
            total = F.binary_cross_entropy_with_logits(
                logits, labels.to(logits.dtype), pos_weight=self.class_weights, reduction="sum"
            )
        else:
            total = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                labels.reshape(-1),
                weight=self.class_weights,
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
        count = (labels != IGNORE_INDEX).sum() if num_items_in_batch is None else num_items_in_batch
        return total / count

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Final-layer states in the padded layout, computed on a packed batch when that saves rows."""
        implementation = _compat.attention_implementation(self.config)
        packable = self.packing and implementation in PACKABLE_ATTENTION
        packing = plan_packing(attention_mask) if packable else None
        if packing is None and self.layerwise:  # every layer is handed an explicit mask
            packing = padded_layout(attention_mask)
        # No key/value cache: nothing is generated, and filling one costs a copy per layer.
        if packing is None:
            return self.backbone(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False
            ).last_hidden_state
        dtype = self.backbone.dtype
        masks = {"attention_mask": packing.attention_mask(self.config.is_causal, implementation, dtype)}
        if self.layerwise:
            masks[LAYER_MASK] = packing.attention_mask(False, implementation, dtype)
        packed = self.backbone(
            input_ids=packing.gather(input_ids), position_ids=packing.position_ids, use_cache=False, **masks
        ).last_hidden_state
        return packing.scatter(packed, *input_ids.shape)


def build_model(
    config: TrainConfig,
    num_labels: int,
    shape: str = "single",
    class_weights: list[float] | None = None,
    dtype: torch.dtype = torch.float32,
    quantized_on: torch.device | None = None,
) -> LabelSupervisedModel:
    """The run's backbone (its weights in `dtype`, its attention mode checked) under a fresh fp32 head,
    before LoRA. With `quantized_on`, a --quantize run's linear layers load quantised straight onto that
    device (checked by the caller: lsllm.modeling.quantization.check) and the rest in bf16."""
    loading = quantization.loading_options(config.quantize, quantized_on) if quantized_on else {}
    backbone = load_backbone(
        resolve_model(config.model),
        backbone_attention(config.attention, config.bidirectional_layers),
        torch.bfloat16 if loading else dtype,
        config.attn_implementation,
        config.trust_remote_code,
        **loading,
    )
    model = LabelSupervisedModel(
        backbone,
        num_labels,
        config.task,
        config.pooling,
        config.packing,
        config.bidirectional_layers,
        config.head_bias,
        shape,
        class_weights,
    )
    if model.layerwise:
        check_layerwise(model)
    return model
