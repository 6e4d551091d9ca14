"""The onnx format: the merged model as an ONNX graph (model.onnx, its weights in model.onnx.data), written
by torch's own exporter, which onnxruntime runs with no torch, and `lsllm predict/eval/serve` through
`--runtime onnx`.

The graph takes token ids and an attention mask with free batch and sequence axes and gives logits,
whatever the run's pooling or attention, since it is lsllm's own forward pass (padded, not packed: a
packing plan depends on the data). It is compared with the run before it is written.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from lsllm.artifacts import ONNX_INT8_MODEL, ONNX_MODEL
from lsllm.config import TrainConfig
from lsllm.data.collate import Collator
from lsllm.errors import LsllmError, first_line
from lsllm.export.check import check_same_logits, largest_change, probe_ids
from lsllm.modeling.model import LabelSupervisedModel
from lsllm.modeling.onnx_model import INPUTS, OUTPUT, OnnxModel, quantize_to_int8, require


class _Logits(nn.Module):
    """The model's forward pass with the tensor inputs and output the graph names."""

    def __init__(self, model: LabelSupervisedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask)["logits"]


def write_onnx_model(
    model: LabelSupervisedModel, settings: TrainConfig, tokenizer, folder: Path, int8: bool = False
) -> list[str]:
    """Export the merged fp32 model into `folder` and prove onnxruntime gives its logits; with `int8`, also
    its graph with int8 weights, noting how far that moves the probe's probabilities."""
    require("onnx", "onnxscript", "onnxruntime")
    model.eval().packing = False
    example = Collator(tokenizer.pad_token_id, tokenizer.padding_side)(
        [{"input_ids": ids} for ids in probe_ids(settings, tokenizer)]
    )
    axes = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")}
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # its notes (e.g. on torchvision's ops) are not for our users
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the same, as warnings
            torch.onnx.export(
                _Logits(model),
                tuple(example[name] for name in INPUTS),
                str(folder / ONNX_MODEL),
                dynamo=True,
                external_data=True,
                input_names=list(INPUTS),
                output_names=[OUTPUT],
                dynamic_shapes={name: axes for name in INPUTS},
                verbose=False,
            )
    except Exception as error:  # the exporter's failures are many kinds; all mean this model cannot go
        raise LsllmError(
            f"torch's ONNX exporter cannot export this model ({first_line(error)}); export it with"
            " --format lsllm"
        ) from None
    finally:
        exporter_log.setLevel(level)
    graph = OnnxModel(folder / ONNX_MODEL)
    fix = "export it with --format lsllm"
    check_same_logits(
        model, lambda batch: graph(**batch)["logits"], "the ONNX graph", settings, tokenizer, fix
    )
    if not int8:
        return []
    quantize_to_int8(folder / ONNX_MODEL, folder / ONNX_INT8_MODEL, model.config.hidden_size)
    quantized = OnnxModel(folder / ONNX_INT8_MODEL)
    moved = largest_change(model, lambda batch: quantized(**batch)["logits"], settings, tokenizer)
    return [
        f"the int8 graph moved probabilities by up to {moved:.3f} on short probe inputs; check it on your"
        " data with 'lsllm eval EXPORT --data FILE --precision int8'"
    ]
