"""lsllm's model as transformers' own classification classes (LlamaForSequenceClassification,
Qwen2ForTokenClassification, ...), and back: what plain transformers, its pipelines and other serving
stacks load with no lsllm installed.

Those classes (transformers 5.24, GenericFor{Sequence,Token}Classification) put a linear head named
`score` on the bare decoder: for a sequence, on the last token that is not `pad_token_id` (a head without
a bias); for tokens, on every token (with a bias unless `token_classification_bias` is false). `is_causal`
in the config carries bidirectional attention, and `problem_type` the label shape (multi-label: sigmoid
scores; regression: one output). Which runs they can express is the exporter's question.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, PreTrainedModel

from lsllm.config import TrainConfig
from lsllm.errors import LsllmError
from lsllm.modeling.hf import PROBLEM_TYPES, shape_of
from lsllm.modeling.model import LabelSupervisedModel

AUTO_CLASSES = {
    "sequence": AutoModelForSequenceClassification,
    "regression": AutoModelForSequenceClassification,
    "token": AutoModelForTokenClassification,
}


def stock_head(stock: PreTrainedModel) -> nn.Linear:
    """The classification head: the one linear layer directly under the stock model (`score`)."""
    heads = [child for child in stock.children() if isinstance(child, nn.Linear)]
    if len(heads) != 1:
        raise LsllmError(
            f"transformers' {type(stock).__name__} has {len(heads)} linear heads, not one; lsllm cannot"
            " map its head onto it, so export with --format lsllm or --format onnx"
        )
    return heads[0]


def to_stock(model: LabelSupervisedModel, names: list[str], pad_token_id: int) -> PreTrainedModel:
    """A stock classification model (fp32) holding a copy of `model`'s merged backbone and its head."""
    config = copy.deepcopy(model.backbone.config)
    config.architectures = None  # saving names the stock class
    config.id2label = dict(enumerate(names))
    config.label2id = {name: i for i, name in enumerate(names)}
    config.pad_token_id = pad_token_id  # how the sequence class finds each row's last real token
    bias = model.head.bias is not None
    if model.task != "token":
        config.problem_type = PROBLEM_TYPES[model.shape]
    else:
        config.token_classification_bias = bias
    try:
        stock = AUTO_CLASSES[model.task].from_config(config, dtype=torch.float32)
    except ValueError:  # transformers has no such class for this architecture
        raise LsllmError(
            f"transformers has no {model.task} classification class for model type {config.model_type!r};"
            " export with --format lsllm or --format onnx"
        ) from None
    stock.base_model.load_state_dict(model.backbone.state_dict())  # strict: every name must match
    head = stock_head(stock)
    if bias and head.bias is None:
        raise LsllmError(
            f"transformers' {type(stock).__name__} has a head without a bias and the run's has one;"
            " export with --format lsllm or --format onnx"
        )
    with torch.no_grad():
        head.weight.copy_(model.head.weight)
        if head.bias is not None:  # a stock head with a bias the run never had: a zero bias is the same
            head.bias.copy_(model.head.bias if bias else torch.zeros_like(head.bias))
    return stock.eval()


def from_stock(stock: PreTrainedModel, config: TrainConfig) -> LabelSupervisedModel:
    """lsllm's model around a loaded stock model's decoder and head (sharing their weights)."""
    head = stock_head(stock)
    model = LabelSupervisedModel(
        stock.base_model,
        head.out_features,
        config.task,
        config.pooling,
        head_bias=head.bias is not None,
        shape=shape_of(stock.config),
    )
    model.head = head
    return model
