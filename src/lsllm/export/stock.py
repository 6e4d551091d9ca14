"""The transformers format: a run as transformers' own classification class (modeling/stock.py), which
AutoModelFor*Classification and pipelines load with no lsllm installed.

Only runs those classes can express are written: `check_representable` is the one list of what they
cannot carry, each refused in one line that names the format that can. Before anything is written the
stock model's logits are compared with the run's on probe inputs padded left and right, so an architecture
that ignores `is_causal` or pools differently is refused rather than exported wrong.
"""

from __future__ import annotations

from pathlib import Path

from lsllm.config import TrainConfig
from lsllm.errors import LsllmError
from lsllm.export.check import check_same_logits, probe_ids
from lsllm.modeling.model import LabelSupervisedModel
from lsllm.modeling.stock import to_stock

OTHER_FORMATS = "--format lsllm or --format onnx, which carry any run"


def unrepresentable(config: TrainConfig, tokenizer) -> str | None:
    """Why transformers' own classes cannot compute what this run computes, and the fix; None if they can."""
    if config.bidirectional_layers is not None:
        return (
            f"it unmasks only layers {config.bidirectional_layers} (--bidirectional-layers), and"
            " transformers' classes run every layer causal or every layer bidirectional; export it with"
            f" {OTHER_FORMATS}"
        )
    if config.task != "token" and config.pooling != "last":
        return (
            f"it pools with --pooling {config.pooling}, and transformers' sequence classes pool the last"
            f" token only; export it with {OTHER_FORMATS}"
        )
    if config.task != "token" and config.head_bias:
        return (
            "its head has a bias (a run from before --head-bias, or --head-bias), and transformers' sequence"
            f" head has none; export it with {OTHER_FORMATS}, or retrain with --no-head-bias"
        )
    if config.task != "token" and probe_ids(config, tokenizer)[0][-1] == tokenizer.pad_token_id:
        return (
            f"its tokenizer ends every input with its pad token {tokenizer.pad_token!r}, which transformers'"
            f" last-token pooling takes for padding; export it with {OTHER_FORMATS}"
        )
    return None


def check_representable(config: TrainConfig, tokenizer) -> None:
    reason = unrepresentable(config, tokenizer)
    if reason:
        raise LsllmError(f"this run cannot be exported as a stock transformers model: {reason}")


def write_stock_model(
    model: LabelSupervisedModel, settings: TrainConfig, names: list[str], tokenizer, folder: Path
) -> list[str]:
    """Save the merged run as its stock class into `folder`, once proven to give the run's logits; returns
    what a user of the checkpoint must know."""
    stock = to_stock(model.eval(), names, tokenizer.pad_token_id)
    what = f"transformers' {type(stock).__name__}"
    fix = f"export it with {OTHER_FORMATS}"
    check_same_logits(model, lambda batch: stock(**batch).logits, what, settings, tokenizer, fix)
    stock.save_pretrained(folder)
    if not settings.template:
        return []
    chat = " inside the model's chat template" if settings.chat_template else ""
    return [
        f"the run puts each text into its --template{chat}, which a transformers checkpoint cannot carry:"
        " format inputs as the model card shows before classifying them"
    ]
