"""lsllm's model as an ONNX graph run by onnxruntime on the CPU: token ids and attention mask -> logits,
as the torch model computes them in prediction, for batches of any size and length.

The graph is written by `lsllm export --format onnx` (export/onnx_graph.py); onnxruntime, onnx and
onnxscript are the optional extra `lsllm[onnx]`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from lsllm.errors import LsllmError

INPUTS = ("input_ids", "attention_mask")
OUTPUT = "logits"


def require(*packages: str) -> None:
    """One line naming the install when a package of the [onnx] extra is missing."""
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise LsllmError(
            f"ONNX needs {' and '.join(missing)}, which a plain install leaves out; install them with:"
            " pip install 'lsllm[onnx]'"
        )


class OnnxModel:
    """An exported graph in an onnxruntime session; called like lsllm's torch model in prediction."""

    device = torch.device("cpu")

    def __init__(self, path: Path) -> None:
        require("onnxruntime")
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings would break one-line output
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: object) -> dict:
        feed = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        (logits,) = self.session.run([OUTPUT], feed)
        return {"logits": torch.from_numpy(logits)}


def quantize_to_int8(source: Path, target: Path, hidden_size: int) -> None:
    """Write `source`'s graph to `target` with int8 weights (one scale per output channel) in the products
    with the decoder's linear layers, activations quantised per call (onnxruntime's dynamic quantisation),
    except the layers that read the MLP's wide intermediate activations (input wider than `hidden_size`),
    whose outliers cost accuracy, as lsllm's torch int8 leaves them (modeling/precision.py). Attention's
    own products and the head (the graph's last product with a weight) stay fp32."""
    require("onnx", "onnxruntime")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    shapes = {weight.name: list(weight.dims) for weight in graph.initializer}
    weighted = [  # in the graph's order, which is the order of computation
        node
        for node in graph.node
        if node.op_type in ("MatMul", "Gemm") and len(shapes.get(node.input[1], [])) == 2
    ]
    narrow = [
        node.name
        for node in weighted[:-1]
        if node.op_type == "MatMul" and shapes[node.input[1]][0] <= hidden_size
    ]
    quantize_dynamic(
        str(source),
        str(target),
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=narrow,
        per_channel=True,
        weight_type=QuantType.QInt8,
        use_external_data_format=True,
    )
