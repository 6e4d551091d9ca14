"""The folders a trained model lives in: the run folder `lsllm train` writes, the export folder `lsllm
export` writes, and opening either one for `lsllm eval/predict/serve` and `lsllm.load`."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from peft import PeftModel
from torch import nn

from lsllm.atomic import swap_in_dir, write_json_atomic
from lsllm.config import SAVED_RUN_DEFAULTS, YAML_END, TrainConfig, read_yaml
from lsllm.data.labels import LabelMap
from lsllm.decision import Decision
from lsllm.errors import LsllmError, first_line
from lsllm.modeling import quantization
from lsllm.modeling.attention import backbone_attention, check_attention, check_layerwise
from lsllm.modeling.backbone import load_tokenizer
from lsllm.modeling.hf import HF_CLASSES, MODEL_TYPE, shape_of
from lsllm.modeling.model import build_model
from lsllm.modeling.onnx_model import OnnxModel
from lsllm.modeling.stock import AUTO_CLASSES, from_stock

CONFIG = "config.yaml"
LABELS = "labels.json"
THRESHOLDS = "thresholds.json"  # a multi-label run's decision thresholds, tuned on dev when training ends
OFFSETS = "offsets.json"  # a --metric macro_f1 run's label offsets, tuned on dev when training ends
DECISION_FILES = (THRESHOLDS, OFFSETS)  # what a run's decision rule reads besides its labels
TOKENIZER = "tokenizer"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
METRICS = "metrics.json"
TRAINING_LOG = "training_log.jsonl"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
HF_CONFIG = "config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # one file, or shards and their index
ONNX_MODEL = "model.onnx"  # its weights beside it, in model.onnx.data
ONNX_INT8_MODEL = "model.int8.onnx"  # with int8 weights (lsllm export --int8), in model.int8.onnx.data
LOCATE = "pass the --output folder of 'lsllm train' or 'lsllm export'"


class TrainedFolder:
    """What a run folder and an export share: the run's config.yaml and labels.json, a tokenizer and the
    weights, checked to be complete before anything heavy is loaded."""

    kind = "folder"
    repair = ""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def tokenizer_path(self) -> Path:
        raise NotImplementedError

    def missing(self) -> list[str]:
        """The files this folder should hold but does not."""
        raise NotImplementedError

    def check(self) -> None:
        missing = self.missing()
        if missing:
            raise LsllmError(
                f"{self.path} is not a complete lsllm {self.kind} (missing {', '.join(missing)});"
                f" {self.repair}"
            )

    def load_config(self) -> TrainConfig:
        """The run's options; a config.yaml cut short (it lacks the end marker lsllm writes, or for runs
        saved before the marker, any option) is an error rather than silently filled with defaults."""
        path = self.path / CONFIG
        complete = path.read_text(encoding="utf-8", errors="replace").rstrip().endswith(YAML_END)
        try:
            values = read_yaml(path)
        except LsllmError:
            if complete:
                raise
            values = {}
        if not complete and {f.name for f in dataclasses.fields(TrainConfig)} - set(values):
            raise LsllmError(f"{path} is cut short (it lacks options and its end marker); {self.repair}")
        values = {**SAVED_RUN_DEFAULTS, **values}
        return TrainConfig.from_dict(values, source=str(path)).validate(required=("model", "task"))

    def load_tokenizer(self):
        return load_tokenizer(str(self.tokenizer_path), fix=self.repair)

    def load_labels(self) -> LabelMap:
        try:
            return LabelMap.from_dict(json.loads((self.path / LABELS).read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as error:
            raise LsllmError(
                f"{self.path / LABELS} is corrupt ({first_line(error)}); {self.repair}"
            ) from None

    def load_decision(self, labels: LabelMap) -> Decision:
        """The run's decision rule; for a multi-label run, with the thresholds tuned on dev; for a
        --metric macro_f1 run, with the offsets tuned on dev."""
        if labels.shape == "single" and (self.path / OFFSETS).exists():
            return Decision("single", offsets=self._per_label(OFFSETS, "offsets", labels))
        if labels.shape != "multi":
            return Decision.untuned(labels)  # nothing to tune
        path = self.path / THRESHOLDS
        if not path.exists():
            raise LsllmError(
                f"{self.path} has no {THRESHOLDS}, which a multi-label run writes when training ends;"
                f" {self.repair}"
            )
        return Decision("multi", self._per_label(THRESHOLDS, "thresholds", labels))

    def _per_label(self, name: str, key: str, labels: LabelMap) -> tuple[float, ...]:
        """One number per label, in head order, from the run's `name` file (written by save_thresholds or
        save_offsets)."""
        path = self.path / name
        try:
            tuned = json.loads(path.read_text(encoding="utf-8"))[key]
            return tuple(float(tuned[str(label)]) for label in labels.names)
        except (ValueError, KeyError, TypeError) as error:
            raise LsllmError(f"{path} is corrupt ({first_line(error)}); {self.repair}") from None

    def load_model(self, config: TrainConfig, labels: LabelMap, device: torch.device) -> nn.Module:
        """The trained model, its attention mode checked, to predict on `device`: in fp32 with LoRA folded
        into its weights, or for a --quantize run (CUDA only) quantised as it trained, LoRA kept apart."""
        raise NotImplementedError

    @property
    def runtime(self) -> str:
        """What runs this folder's model unless asked otherwise: torch, or onnxruntime for an ONNX export."""
        return "torch"

    def load_onnx(self, int8: bool = False) -> OnnxModel:
        """The model as an onnxruntime session, its int8 graph if asked: only an ONNX export has one."""
        raise LsllmError(
            f"--runtime onnx runs an ONNX export, and {self.path} is not one; write one with"
            " 'lsllm export RUN --format onnx --output DIR'"
        )


class RunFolder(TrainedFolder):
    """A run folder: written step by step while training, each file replaced only once its new version
    is complete."""

    kind = "run"
    repair = "finish training with 'lsllm train --resume' or retrain"

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER

    def prepare_for_training(self, resume: bool) -> None:
        """Refuse to overwrite a finished or started run unless the user asks to resume it."""
        started = (self.path / CONFIG).exists() or (self.path / CHECKPOINTS).exists()
        if started and not resume:
            raise LsllmError(
                f"output folder {self.path} already holds a run; "
                "pass --resume to continue it or choose a new --output"
            )
        self.path.mkdir(parents=True, exist_ok=True)

    def save_setup(self, config: TrainConfig, labels: LabelMap, tokenizer) -> None:
        """Write what is known before training starts, so even an interrupted run can be inspected."""
        config.save(self.path / CONFIG)
        write_json_atomic(self.path / LABELS, labels.to_dict())
        self._replace_dir(self.path / TOKENIZER, tokenizer.save_pretrained)

    def save_thresholds(self, labels: LabelMap, thresholds: tuple[float, ...], per_label: bool) -> None:
        """Write the thresholds tuned on dev: one per label, or one shared (`per_label` says which)."""
        values = {str(name): t for name, t in zip(labels.names, thresholds, strict=True)}
        write_json_atomic(self.path / THRESHOLDS, {"thresholds": values, "per_label": per_label})

    def save_offsets(self, labels: LabelMap, offsets: tuple[float, ...]) -> None:
        """Write the label offsets tuned on dev (--metric macro_f1)."""
        values = {str(name): o for name, o in zip(labels.names, offsets, strict=True)}
        write_json_atomic(self.path / OFFSETS, {"offsets": values, "tuned_for": "macro_f1"})

    def save_weights(self, save: Callable[[str], None], keep: bool = True) -> None:
        """Save the LoRA adapter and the head with `save(folder)` (a PeftModel's or a Trainer's, which
        write safetensors), swapping them in only once fully written. Each training process calls it, since
        sharded engines gather the weights together; only the one that `keep`s them writes."""
        with tempfile.TemporaryDirectory(dir=self.path, prefix=".weights.") as tmp:
            save(tmp)
            if keep:
                for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
                    os.replace(Path(tmp) / name, self.path / name)

    def _replace_dir(self, target: Path, save) -> None:
        """Write a folder beside `target` and swap it in, so the old one stays whole until the new one is."""
        tmp = Path(tempfile.mkdtemp(dir=self.path, prefix=f".{target.name}."))
        save(str(tmp))
        swap_in_dir(tmp, target)

    def missing(self) -> list[str]:
        if not self.path.is_dir():
            raise LsllmError(f"run folder not found: {self.path}; {LOCATE}")
        needed = (CONFIG, LABELS, TOKENIZER, ADAPTER_CONFIG, ADAPTER_WEIGHTS)
        missing = [name for name in needed if not (self.path / name).exists()]
        if len(missing) == len(needed):
            raise LsllmError(
                f"{self.path} is neither an lsllm run folder nor an export (no {CONFIG} or {HF_CONFIG});"
                f" {LOCATE}"
            )
        return missing

    def load_adapted(
        self,
        config: TrainConfig,
        labels: LabelMap,
        quantized_on: torch.device | None = None,
        dequantize: bool = False,
    ) -> PeftModel:
        """The base model, its attention mode checked, with the run's LoRA adapter (kept apart) and head.
        A --quantize run's backbone loads quantised onto `quantized_on`, and with `dequantize` is turned
        back into plain weights, exactly those training computed with, before the adapter goes on."""
        core = build_model(config, len(labels), labels.shape, quantized_on=quantized_on)
        if dequantize:
            quantization.dequantize(core.backbone)
        try:
            return PeftModel.from_pretrained(core, str(self.path))
        except Exception as error:  # safetensors, shape and key errors all mean the same thing here
            raise LsllmError(
                f"cannot load the weights in {self.path} ({first_line(error)});"
                " the run is corrupt, retrain it"
            ) from None

    def load_model(self, config: TrainConfig, labels: LabelMap, device: torch.device) -> nn.Module:
        if config.quantize == "none":
            return self.load_adapted(config, labels).merge_and_unload()
        quantization.check(
            config.quantize, device, "predicting", fix="export the run on a GPU to predict anywhere"
        )
        return self.load_adapted(config, labels, quantized_on=device)


def export_model_type(path: Path):
    """The model_type in the folder's config.json; raises OSError or ValueError if it cannot be read."""
    values = json.loads((path / HF_CONFIG).read_text(encoding="utf-8"))
    if not isinstance(values, dict):
        raise ValueError(f"{HF_CONFIG} holds no JSON object")
    return values.get("model_type")


def export_format(path: Path) -> str | None:
    """The format of a folder `lsllm export` wrote: onnx (an ONNX graph), lsllm (lsllm's model type) or
    transformers (another model type beside the run's config.yaml); None for any other folder. Raises
    OSError or ValueError if its config.json cannot be read."""
    if (path / ONNX_MODEL).exists():
        return "onnx"
    if export_model_type(path) == MODEL_TYPE:
        return "lsllm"
    return "transformers" if (path / CONFIG).exists() else None


def is_export(path: Path) -> bool:
    try:
        return export_format(path) is not None
    except (OSError, ValueError):
        return False


class ExportFolder(TrainedFolder):
    """A folder written by `lsllm export`: a transformers model folder (lsllm's model type or transformers'
    own class) or an ONNX graph, beside the run's config.yaml and labels.json, so it reads like the run."""

    kind = "export"
    repair = "export the run again with 'lsllm export'"

    @property
    def tokenizer_path(self) -> Path:
        return self.path

    @property
    def format(self) -> str | None:
        try:
            return export_format(self.path)
        except (OSError, ValueError) as error:
            raise LsllmError(
                f"cannot read {self.path / HF_CONFIG} ({first_line(error)}); {self.repair}"
            ) from None

    def missing(self) -> list[str]:
        if self.format is None:
            raise LsllmError(
                f"{self.path} is neither an lsllm run folder nor an export (its {HF_CONFIG} is for model "
                f"type {export_model_type(self.path)!r}); {LOCATE}"
            )
        missing = [name for name in (CONFIG, LABELS, TOKENIZER_CONFIG) if not (self.path / name).exists()]
        if self.format != "onnx" and not any((self.path / name).exists() for name in WEIGHTS):
            missing.append(WEIGHTS[0])
        return missing

    @property
    def runtime(self) -> str:
        return "onnx" if self.format == "onnx" else "torch"

    def load_onnx(self, int8: bool = False) -> OnnxModel:
        if self.format != "onnx":
            return super().load_onnx(int8)
        path = self.path / (ONNX_INT8_MODEL if int8 else ONNX_MODEL)
        if not path.exists():
            raise LsllmError(
                f"{self.path} has no int8 graph ({ONNX_INT8_MODEL}); export the run again with"
                " 'lsllm export RUN --format onnx --int8', or leave out --precision int8"
            )
        try:
            return OnnxModel(path)
        except LsllmError:
            raise
        except Exception as error:  # onnxruntime's own error types; all mean the graph cannot be run
            raise LsllmError(
                f"cannot load {path} ({first_line(error)}); the export is corrupt, {self.repair}"
            ) from None

    def load_model(self, config: TrainConfig, labels: LabelMap, device: torch.device) -> nn.Module:
        if self.format == "onnx":
            raise LsllmError(
                f"{self.path} is an ONNX export, which onnxruntime runs; use --runtime onnx (the default"
                " for it), or export the run in another --format for torch"
            )
        lsllm_type = self.format == "lsllm"
        auto = HF_CLASSES[config.task] if lsllm_type else AUTO_CLASSES[config.task]
        try:
            exported, info = auto.from_pretrained(self.path, dtype=torch.float32, output_loading_info=True)
            # transformers starts missing weights from random values; a prediction from those is wrong
            unmatched = sorted(info["missing_keys"] | info["unexpected_keys"])
            if unmatched:
                raise ValueError(f"{len(unmatched)} weight names do not match the model, e.g. {unmatched[0]}")
        except Exception as error:  # safetensors, shape and key errors all mean the same thing here
            raise LsllmError(
                f"cannot load the weights in {self.path} ({first_line(error)}); "
                f"the export is corrupt or from an incompatible lsllm or peft version, {self.repair}"
            ) from None
        found = (exported.config.num_labels, shape_of(exported.config))
        if found != (len(labels), labels.shape):
            raise LsllmError(
                f"{self.path / HF_CONFIG} has {found[0]} labels ({found[1]}) but {LABELS} has {len(labels)}"
                f" ({labels.shape}); {self.repair}"
            )
        if lsllm_type:
            exported.merge_lora()
            model = exported.lsllm
        else:
            model = from_stock(exported, config)
        check_attention(
            model.backbone,
            backbone_attention(config.attention, config.bidirectional_layers),
            model.config.vocab_size,
        )
        if model.layerwise:
            check_layerwise(model)
        return model


def open_trained(path: str | Path) -> TrainedFolder:
    """The run folder or export folder at `path`, checked to be complete."""
    path = Path(path)
    exported = (path / HF_CONFIG).exists() or (path / ONNX_MODEL).exists()
    folder = ExportFolder(path) if exported else RunFolder(path)
    folder.check()
    return folder
