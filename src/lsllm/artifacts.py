"""The run folder: what `lsllm train` writes and what `lsllm eval/predict` and `lsllm.load` read back."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from peft import PeftModel

from lsllm.atomic import write_json_atomic
from lsllm.config import TrainConfig
from lsllm.data.labels import LabelMap
from lsllm.errors import LsllmError, first_line
from lsllm.modeling import build_model

CONFIG = "config.yaml"
LABELS = "labels.json"
TOKENIZER = "tokenizer"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
METRICS = "metrics.json"
TRAINING_LOG = "training_log.jsonl"
CHECKPOINTS = "checkpoints"


class RunFolder:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

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

    def save_weights(self, model: PeftModel) -> None:
        """Save the LoRA adapter and the head (safetensors), swapping them in only once fully written."""
        with tempfile.TemporaryDirectory(dir=self.path, prefix=".weights.") as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
                os.replace(Path(tmp) / name, self.path / name)

    def _replace_dir(self, target: Path, save) -> None:
        """Write a folder beside `target` and swap it in, so the old one stays whole until the new one is."""
        tmp = Path(tempfile.mkdtemp(dir=self.path, prefix=f".{target.name}."))
        save(str(tmp))
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=self.path, prefix=f".{target.name}.old."))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old)

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER

    def check(self) -> None:
        """Make sure this is a complete run folder before anything heavy is loaded."""
        if not self.path.is_dir():
            raise LsllmError(
                f"run folder not found: {self.path}; "
                "pass the --output folder of 'lsllm train' or 'lsllm export'"
            )
        needed = (CONFIG, LABELS, TOKENIZER, ADAPTER_CONFIG, ADAPTER_WEIGHTS)
        missing = [name for name in needed if not (self.path / name).exists()]
        if len(missing) == len(needed):
            raise LsllmError(
                f"{self.path} is neither an lsllm run folder nor an export (no {CONFIG} or config.json); "
                "pass the --output folder of 'lsllm train' or 'lsllm export'"
            )
        if missing:
            raise LsllmError(
                f"{self.path} is not a complete lsllm run (missing {', '.join(missing)}); "
                "finish training with 'lsllm train --resume' or retrain"
            )

    def load_model(self, config: TrainConfig, num_labels: int) -> PeftModel:
        """The trained model: base model, attention mode, LoRA adapter (not merged) and head."""
        core = build_model(config, num_labels)
        try:
            return PeftModel.from_pretrained(core, str(self.path))
        except Exception as error:  # safetensors, shape and key errors all mean the same thing here
            raise LsllmError(
                f"cannot load the weights in {self.path} ({first_line(error)}); "
                "the run is corrupt, retrain it"
            ) from None

    def load_config(self) -> TrainConfig:
        return TrainConfig.from_yaml(self.path / CONFIG)

    def load_labels(self) -> LabelMap:
        try:
            return LabelMap.from_dict(json.loads((self.path / LABELS).read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as error:
            raise LsllmError(f"{self.path / LABELS} is corrupt ({error}); retrain the run") from None
