"""`lsllm export`: a trained run as one self-contained folder, in the format of the stack that will run it.

- lsllm (native.py): lsllm's own model type; carries every run, LoRA merged or kept apart; plain
  transformers loads it once lsllm is imported.
- transformers (stock.py): transformers' own classes, for runs they can express; loads with no lsllm.
- onnx (onnx_graph.py): an ONNX graph of lsllm's forward pass, for any run; onnxruntime runs it with no
  torch, and `lsllm predict/eval/serve` with `--runtime onnx`.

Every folder also holds the tokenizer, the run's config.yaml and labels.json (and a multi-label run's
thresholds.json, a --metric macro_f1 run's offsets.json), so `lsllm.load` reads it as it reads the run,
and a model card. It appears whole, replacing an earlier export, or not at all.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from peft import PeftModel

from lsllm.artifacts import (
    CONFIG,
    DECISION_FILES,
    LABELS,
    METRICS,
    ExportFolder,
    RunFolder,
    is_export,
    open_trained,
)
from lsllm.atomic import swap_in_dir, write_text_atomic
from lsllm.config import EXPORT_FORMATS
from lsllm.errors import LsllmError
from lsllm.export.native import write_lsllm_model
from lsllm.export.onnx_graph import write_onnx_model
from lsllm.export.stock import check_representable, write_stock_model
from lsllm.model_card import model_card
from lsllm.modeling import quantization
from lsllm.modeling.precision import default_device

MODEL_CARD = "README.md"


@dataclass
class Exported:
    """Where an export went, in which format, and what its user should know (the CLI prints the notes)."""

    path: Path
    format: str
    notes: list[str] = field(default_factory=list)


def export_run(
    run_dir: str | Path, output: str | Path, merge: bool = False, format: str = "lsllm", int8: bool = False
) -> Exported:
    """Write the run at `run_dir` to `output` in `format`; `merge` folds LoRA in (the lsllm format keeps it
    apart unless asked; the others always fold it in); `int8` adds an int8 graph to an ONNX export. The
    folder appears when complete."""
    if format not in EXPORT_FORMATS:
        raise LsllmError(f"unknown export format {format!r}; use one of: {', '.join(EXPORT_FORMATS)}")
    if int8 and format != "onnx":
        raise LsllmError("--int8 adds an int8 graph to an ONNX export; use it with --format onnx")
    run, output = open_trained(run_dir), Path(output)
    if isinstance(run, ExportFolder):
        raise LsllmError(f"{run.path} is an export already; pass the run folder written by 'lsllm train'")
    if output.exists() and not (output.is_dir() and (is_export(output) or not any(output.iterdir()))):
        raise LsllmError(
            f"{output} exists and is not an lsllm export, so it is not replaced; choose a new --output"
        )
    settings, labels, tokenizer = run.load_config(), run.load_labels(), run.load_tokenizer()
    run.load_decision(labels)  # a multi-label run must have its thresholds to be exported, intact
    names = [str(label) for label in labels.names]
    if format == "transformers":
        check_representable(settings, tokenizer)
    if settings.quantize == "none":
        trained = run.load_adapted(settings, labels)
    else:  # the weights as training computed with them, dequantised, so that LoRA folds into those
        device = default_device()
        quantization.check(settings.quantize, device, "exporting")
        trained = run.load_adapted(settings, labels, quantized_on=device, dequantize=True)
    lora = lora_settings(trained)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        if format == "lsllm":
            notes = write_lsllm_model(trained, settings, names, lora, merge, staging)
        elif format == "transformers":
            notes = write_stock_model(trained.merge_and_unload(), settings, names, tokenizer, staging)
        else:
            notes = write_onnx_model(trained.merge_and_unload(), settings, tokenizer, staging, int8)
        tokenizer.save_pretrained(staging)
        kept = [name for name in DECISION_FILES if (run.path / name).exists()]  # tuned on dev, if any
        for name in (CONFIG, LABELS, *kept):
            shutil.copy(run.path / name, staging / name)
        card = model_card(settings, labels, _metrics(run), lora, format, merge or format != "lsllm")
        write_text_atomic(staging / MODEL_CARD, card)
        swap_in_dir(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Exported(output, format, notes)


def lora_settings(trained: PeftModel) -> dict:
    """The run's LoRA settings, as peft's LoraConfig takes them."""
    adapter = trained.peft_config["default"]
    return {
        "r": adapter.r,
        "lora_alpha": adapter.lora_alpha,
        "lora_dropout": adapter.lora_dropout,
        "target_modules": sorted(adapter.target_modules),
    }


def _metrics(run: RunFolder) -> dict:
    path = run.path / METRICS
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
