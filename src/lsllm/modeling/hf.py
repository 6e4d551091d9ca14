"""lsllm's model as transformers classes, so an exported folder loads with AutoModelFor*Classification.

`import lsllm` registers them with the Auto classes. No `trust_remote_code` is needed: the code comes
from the installed lsllm, never from the model folder. The backbone's own config is kept whole inside
ours, with `is_causal` set by the attention mode, so transformers rebuilds the same decoder. An export
that keeps LoRA apart also keeps its peft settings in the config, and the LoRA layers are rebuilt on load.
The label shape is transformers' own `problem_type`, which its pipelines read too (sigmoid scores for
"multi_label_classification").
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

from lsllm import _compat
from lsllm.modeling.attention import backbone_attention

MODEL_TYPE = "lsllm"
# lsllm's label shapes as transformers' `config.problem_type`; a config without one is single-label.
PROBLEM_TYPES = {
    "single": "single_label_classification",
    "multi": "multi_label_classification",
    "regression": "regression",
}


def shape_of(config: PretrainedConfig) -> str:
    """The label shape a transformers config describes (lsllm.data.labels.SHAPES)."""
    shapes = {problem: shape for shape, problem in PROBLEM_TYPES.items()}
    return shapes.get(config.problem_type, "single")


class LsllmConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(
        self,
        backbone: dict | None = None,
        task: str = "sequence",
        attention: str = "causal",
        pooling: str = "last",
        lora: dict | None = None,
        bidirectional_layers: str | None = None,
        head_bias: bool = True,  # exports written before --head-bias all had a bias
        **kwargs,
    ) -> None:
        self.backbone = backbone or {}
        self.task = task
        self.attention = attention
        self.pooling = pooling
        self.bidirectional_layers = bidirectional_layers
        self.head_bias = head_bias
        # peft LoraConfig arguments while the backbone's LoRA layers are kept apart; None once merged.
        self.lora = lora
        super().__init__(**kwargs)

    def to_dict(self) -> dict:
        values = super().to_dict()
        if values.get("lora") is None:  # a merged model's config.json says nothing about LoRA
            values.pop("lora", None)
        return values

    def backbone_config(self) -> PretrainedConfig:
        values = dict(self.backbone)
        config = AutoConfig.for_model(values.pop("model_type"), **values)
        config.is_causal = backbone_attention(self.attention, self.bidirectional_layers) == "causal"
        return config


class _LsllmModel(PreTrainedModel):
    """The backbone and head of a trained run, behind the interface transformers' pipelines expect."""

    config_class = LsllmConfig
    base_model_prefix = "lsllm"
    output_type: type = SequenceClassifierOutput

    def __init__(self, config: LsllmConfig) -> None:
        # Imported here, not at the top: `register` runs while transformers' Auto model classes (and
        # perhaps peft) are still importing, so this module must not need them to load.
        from transformers import AutoModel

        from lsllm.modeling.model import LabelSupervisedModel

        super().__init__(config)
        backbone = AutoModel.from_config(config.backbone_config())
        if config.lora:
            from peft import LoraConfig, inject_adapter_in_model

            inject_adapter_in_model(LoraConfig(**config.lora), backbone)
        self.lsllm = LabelSupervisedModel(
            backbone,
            config.num_labels,
            config.task,
            config.pooling,
            bidirectional_layers=config.bidirectional_layers,
            head_bias=config.head_bias,
            shape=shape_of(config),
        )
        self.post_init()

    def merge_lora(self) -> None:
        """Fold the LoRA layers into the backbone's weights: the same outputs, faster, and no peft needed."""
        if not self.config.lora:
            return
        _compat.merge_injected_lora(self.lsllm.backbone)
        self.config.lora = None

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Weights always come from the exported file; nothing needs a fresh initialisation."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **_: object,
    ):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        output = self.lsllm(input_ids, attention_mask, labels)
        return self.output_type(loss=output.get("loss"), logits=output["logits"])


class LsllmForSequenceClassification(_LsllmModel):
    output_type = SequenceClassifierOutput


class LsllmForTokenClassification(_LsllmModel):
    output_type = TokenClassifierOutput


HF_CLASSES = {
    "sequence": LsllmForSequenceClassification,
    "regression": LsllmForSequenceClassification,
    "token": LsllmForTokenClassification,
}


def register() -> None:
    """Make AutoConfig and AutoModelFor*Classification (and so pipelines) know model_type 'lsllm'."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    AutoConfig.register(MODEL_TYPE, LsllmConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(LsllmConfig, LsllmForSequenceClassification, exist_ok=True)
    AutoModelForTokenClassification.register(LsllmConfig, LsllmForTokenClassification, exist_ok=True)
