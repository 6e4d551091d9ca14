"""One dataclass for a training run: the command line, YAML config files and saved runs all read it."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lsllm.atomic import write_text_atomic
from lsllm.errors import LsllmError, first_line

TASKS = ("sequence", "token", "regression")
DATA_ROLES = ("train", "dev", "test")
ATTENTION_MODES = ("causal", "bidirectional")
POOLING_MODES = ("last", "mean", "max")
PRECISIONS = ("auto", "fp32", "bf16")
HEAD_INITS = ("random", "label-words")
CLASS_WEIGHTS = ("none", "auto")
METRICS = ("accuracy", "macro_f1")  # what --metric may ask of a single-label run
REPORT_TO = ("none", "tensorboard", "wandb")
QUANTIZATIONS = ("none", "4bit", "8bit")
PREDICT_PRECISIONS = (*PRECISIONS, "int8")  # int8 only runs a trained model
EXPORT_FORMATS = ("lsllm", "transformers", "onnx")  # what `lsllm export --format` writes (lsllm.export)
RUNTIMES = ("torch", "onnx")  # what runs a trained model in predict/eval/serve (lsllm.inference)


@dataclass(frozen=True)
class Preset:
    """A named starting point: what it is for, and the option values it sets (which any value the user
    gives, as a YAML key or a flag, overrides)."""

    purpose: str
    values: dict[str, Any]


PRESETS: dict[str, Preset] = {
    # Sequence runs: lsllm's instruction naming the labels, and the head from the labels' words, so that
    # training starts from what zero-shot prompting scores, for 3 epochs, which beat 2 on SST-5 and Twitter
    # Financial News in bench/ and tied on SST-2 (see the README's tables).
    "prompt": Preset(
        "for classification, an instruction naming the labels and the head from the label words; the most"
        " accurate in bench/",
        {"template": "auto", "head_init": "label-words", "epochs": 3.0},
    ),
    # The LS-LLaMA paper's code: LoRA on q_proj/v_proj only (peft's Llama default), 10 epochs at 1e-4.
    "paper": Preset(
        "the LS-LLaMA code's settings",
        {
            "learning_rate": 1e-4,
            "epochs": 10.0,
            "batch_size": 8,
            "max_length": 64,
            "weight_decay": 0.01,
            "lora_r": 12,
            "lora_alpha": 32.0,
            "lora_dropout": 0.1,
            "lora_targets": ["q_proj", "v_proj"],
        },
    ),
    # What bench/ uses for small budgets: every linear layer, a higher rate, two epochs.
    "quick": Preset(
        "bench/'s small-budget settings",
        {"learning_rate": 5e-4, "epochs": 2.0, "batch_size": 16, "max_length": 128},
    ),
}


def presets_help() -> str:
    """--preset's help, written from PRESETS so that it states the values each preset really sets."""
    described = "; ".join(
        f"'{name}' ({preset.purpose}: {_as_flags(preset.values)})" for name, preset in PRESETS.items()
    )
    return f"named settings that the file and flags override: {described}"


def _as_flags(values: dict[str, Any]) -> str:
    """Option values as the flags that would set them, e.g. '--epochs 3 --lora-targets q_proj v_proj'."""

    def written(value: Any) -> str:
        if isinstance(value, list):
            return " ".join(value)
        return _number(value) if isinstance(value, (int, float)) else str(value)

    return " ".join(f"--{flag(name)} {written(value)}" for name, value in values.items())


# Training defaults by task, measured in bench/ (README, "Accuracy against the alternatives"): taggers
# trained at 1e-4 lagged far behind (CoNLL-2003 entity F1 46.5 against 72.7 with these values), and
# classifiers too (SST-2 with --preset prompt 86.2 +- 1.6 at 1e-4, batch 8, 3 epochs; 88.6 +- 0.4 with
# these at 2 epochs). Regression has no benchmark yet, so it keeps the values it had.
TASK_TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    "sequence": {"epochs": 2.0, "learning_rate": 5e-4, "batch_size": 16},
    "regression": {"epochs": 3.0, "learning_rate": 1e-4, "batch_size": 8},
    "token": {"epochs": 4.0, "learning_rate": 5e-4, "batch_size": 16},
}


def defaults_by_task(name: str) -> str:
    """Help text for an option whose default depends on the task and preset, read from the tables above
    so that --help never drifts from them."""
    tasks: dict[str, list[str]] = {}
    for task, values in TASK_TRAINING_DEFAULTS.items():
        tasks.setdefault(_number(values[name]), []).append(task)
    by_task = ", ".join(f"{value} for {' and '.join(names)} runs" for value, names in tasks.items())
    presets = "".join(
        f", {_number(preset.values[name])} with --preset {preset_name}"
        for preset_name, preset in PRESETS.items()
        if name in preset.values
    )
    return f"default: {by_task}{presets}"


def _number(value: float) -> str:
    """1e-4 rather than 0.0001: how learning rates are written."""
    return f"{value:.0e}".replace("e-0", "e-") if 0 < value < 0.01 else f"{value:g}"


# What a run saved before an option existed meant by leaving it out, where a new run's default differs:
# every head had a bias until --head-bias came.
SAVED_RUN_DEFAULTS: dict[str, Any] = {"head_bias": True}

YAML_END = "..."  # YAML's end-of-document marker, the last line of a saved run's config.yaml

# Small batches of length-sorted inputs were fastest on CPU (20.9 sentences/s at 8 against 14.1 at 32
# for SmolLM2 on CoNLL-2003); larger batches spill out of cache.
PREDICT_BATCH_SIZE = 8


def option(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field carrying its command-line help text."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    """Everything that defines a run. Field names are the YAML keys; `--field-name` are the flags."""

    model: str = option(None, "model: local Hugging Face folder, hub id, or built-in name (smollm2-135m)")
    task: str = option(
        None,
        "what to predict: labels per text (sequence: one, or several with --multi-label), one tag per word"
        " (token), or a number per text (regression)",
        choices=TASKS,
    )
    train: str = option(
        None,
        "training data: a file (.jsonl .json .csv .tsv .parquet; CoNLL columns for token), a datasets"
        " save_to_disk folder, or a Hugging Face dataset as NAME:SPLIT or NAME:CONFIG:SPLIT (FOLDER:SPLIT"
        " for a split of a saved DatasetDict); a path that exists is always read as that path",
    )
    dev: str = option(
        None, "development data, as --train: evaluated during training to pick the best checkpoint"
    )
    test: str | None = option(
        None, "test data, as --train: evaluated once at the end, never used for selection"
    )
    output: str = option(None, "run folder to write (created; reused with --resume)")
    attention: str | None = option(
        None,
        "causal (LS-LLaMA) or bidirectional (LS-unLLaMA); default: causal for sequence,"
        " bidirectional for token",
        choices=ATTENTION_MODES,
    )
    bidirectional_layers: str | None = option(
        None,
        "layer-wise unmasking: only these layers attend both ways, the rest stay causal; a Python slice of"
        " layer numbers: -4: the last 4, :4 the first 4, 8: layer 8 and up (implies --attention"
        " bidirectional)",
    )
    mntp_steps: int = option(
        0,
        "bidirectional runs: first adapt the LoRA weights to the unmasked attention with this many steps of"
        " masked next-token prediction on the training texts (LLM2Vec's MNTP), then train on the labels",
    )
    mntp_mask_ratio: float = option(0.2, "share of tokens masked in each --mntp-steps step")
    pooling: str = option("last", "how token states become one vector (sequence task)", choices=POOLING_MODES)
    head_bias: bool | None = option(
        None,
        "give the linear head a bias; default: off for sequence runs, as in transformers' own bias-free"
        " sequence head (so such a run exports to the stock class) and LS-LLaMA's code, on for token runs,"
        " whose stock head has one",
    )
    text_field: list[str] = option(["text"], "text column(s); repeat the flag to join several fields")
    text_pair: bool = option(False, "encode exactly two text fields as a tokenizer pair instead of joining")
    label_field: str = option(
        "label",
        "label column (sequence, regression): a class per row, a list of classes per row (multi-label),"
        " or a number (regression)",
    )
    multi_label: bool = option(
        False,
        "sequence task: several labels per text (sigmoid outputs, binary cross-entropy, a decision threshold"
        " tuned on dev); on by itself when any training row's label is a list, here a lone label is a list"
        " of one",
    )
    label_columns: list[str] | None = option(
        None,
        "multi-label data with one 0/1 column per label, e.g. --label-columns toxic insult (the column"
        " names are the labels) instead of a --label-field of lists",
    )
    threshold_per_label: bool = option(
        False,
        "multi-label: tune one decision threshold per label (the one that maximises that label's dev F1)"
        " instead of one for all labels (the one that maximises dev micro-F1); both from 0.05 to 0.95 in"
        " steps of 0.05",
    )
    metric: str | None = option(
        None,
        "single-label sequence runs: the dev metric you are after. accuracy (the default) picks the"
        " checkpoint with the best dev accuracy and predicts the likeliest label; macro_f1 picks by dev"
        " macro-F1 and adds to each label's logit an offset tuned on dev for it (offsets.json), which wins"
        " back the rare labels of imbalanced data",
        choices=METRICS,
    )
    tokens_field: str = option("tokens", "word-list field of token data in JSON/Parquet rows or a dataset")
    tags_field: str = option(
        "tags",
        "tag-list field of token data in rows or a dataset (e.g. ner_tags; ClassLabel ids become names)",
    )
    labels: list[str] | None = option(
        None, "the full label set in this order (default: from the training data)"
    )
    template: str | None = option(
        None,
        "sequence task: put each text into this prompt, e.g. $'Review: {text}\\nSentiment:' in bash"
        " ({text_pair} for pairs), so the last token is where the model would say the answer; auto: an"
        " instruction naming the labels, in the model's chat template if it has one; the run keeps it for"
        " prediction",
    )
    chat_template: bool = option(
        False, "sequence task: wrap the prompt in the model's chat template as the user's turn"
    )
    instruction: str | None = option(
        None,
        "--template auto: what to ask of each text, in place of 'Classify the text.', e.g. 'Classify the"
        " market sentiment of this financial tweet.' (a task's own words scored higher in bench/)",
    )
    head_init: str = option(
        "random",
        "start the head from random numbers, or (label-words) from the language-model head's rows of each"
        " label's word, so that before training it scores what zero-shot prompting scores (token task:"
        " each tag's entity type, e.g. PER=person)",
        choices=HEAD_INITS,
    )
    label_words: list[str] | None = option(
        None,
        "the word that names each label for --head-init label-words, as LABEL=WORD (default: the label"
        " itself, after a space unless --chat-template)",
    )
    class_weights: str = option(
        "none",
        "auto: weigh each class's loss by inverse frequency in the training labels, n / (k * n_c) for class"
        " c (n labels, k classes seen, n_c of class c), so rare classes count as much as common ones in"
        " total; for multi-label, BCE's pos_weight (negatives / positives of each label); none: unweighted",
        choices=CLASS_WEIGHTS,
    )
    max_train_examples: int | None = option(None, "train on a random subset of this many examples (seeded)")
    max_dev_examples: int | None = option(
        None, "select on a random subset of this many dev examples (seeded)"
    )
    max_length: int = option(
        256,
        "longest input in tokens; longer ones are truncated with a warning, except that token runs"
        " predict long inputs whole, in overlapping windows",
    )
    lora_r: int = option(12, "LoRA rank")
    lora_alpha: float = option(32.0, "LoRA scaling alpha")
    lora_dropout: float = option(0.1, "dropout on the LoRA path")
    lora_targets: list[str] | None = option(
        None, "module names to adapt, e.g. q_proj v_proj (default: every linear layer of the backbone)"
    )
    epochs: float | None = option(None, f"training epochs; {defaults_by_task('epochs')}")
    learning_rate: float | None = option(
        None, f"peak learning rate (linear decay); {defaults_by_task('learning_rate')}"
    )
    batch_size: int | None = option(None, f"examples per device batch; {defaults_by_task('batch_size')}")
    grad_accum: int = option(1, "batches accumulated per optimiser step")
    warmup_ratio: float = option(0.0, "fraction of steps spent warming up the learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    eval_steps: int | None = option(None, "evaluate on dev every N steps (default: once per epoch)")
    logging_steps: int = option(10, "log the training loss every N steps")
    save_total_limit: int = option(2, "checkpoints kept on disk besides the best one")
    seed: int = option(42, "random seed for initialisation and data order")
    group_by_length: bool = option(
        False,
        "batch training examples of similar length: less padding and faster, but on small sentiment data"
        " it cost accuracy in bench/ (SST-2 accuracy 84.3 shuffled, 75.3 grouped)",
    )
    precision: str = option(
        "auto",
        "number format for training: bf16 (autocast), fp32, or auto: bf16 on GPUs and on CPUs whose bf16"
        " units (AVX-512 BF16, AMX) run a matmul at least 1.5x as fast as fp32 (measured once, about"
        " 0.1 s), fp32 elsewhere, where bf16 is emulated or slow",
        choices=PRECISIONS,
    )
    quantize: str = option(
        "none",
        "store the frozen backbone's linear layers in 4 bits (NF4 with double quantisation: QLoRA) or 8 bits"
        " with bitsandbytes, computing in bf16: about a quarter or half of bf16's weight memory; CUDA GPUs"
        " only (pip install 'lsllm[qlora]')",
        choices=QUANTIZATIONS,
    )
    packing: bool = option(
        True,
        "pack short examples side by side into fewer rows (attention stays inside each example) instead of"
        " padding each to the batch's longest; same result, less computed",
    )
    gradient_checkpointing: bool = option(
        False, "recompute the backbone's activations during the backward pass: less memory, slower steps"
    )
    attn_implementation: str | None = option(
        None, "transformers attention backend: eager or sdpa (default: its choice)"
    )
    report_to: str = option(
        "none",
        "also hand the Trainer's logs to tensorboard (event files in RUN/tensorboard) or wandb (needs wandb"
        " installed and logged in, or WANDB_MODE=offline); training_log.jsonl is written either way",
        choices=REPORT_TO,
    )
    trust_remote_code: bool = option(False, "allow model code from the model folder/hub (off unless you ask)")

    def __post_init__(self) -> None:
        if self.attention is None and self.bidirectional_layers is not None:
            self.attention = "bidirectional"
        if self.attention is None and self.task in TASKS:
            self.attention = "bidirectional" if self.task == "token" else "causal"
        if self.head_bias is None and self.task in TASKS:
            self.head_bias = self.task == "token"
        for name, value in TASK_TRAINING_DEFAULTS.get(self.task, {}).items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    def validate(
        self, required: tuple[str, ...] = ("model", "task", "train", "dev", "output")
    ) -> TrainConfig:
        """Check values a user can get wrong, with messages that say which flag to fix."""
        for name in required:
            if getattr(self, name) in (None, ""):
                raise LsllmError(
                    f"missing --{flag(name)}; give it on the command line or as '{name}:' in --config"
                )
        for name in (
            "task",
            "attention",
            "pooling",
            "precision",
            "head_init",
            "class_weights",
            "report_to",
            "quantize",
            *(("metric",) if self.metric is not None else ()),  # optional: the shape's own when left out
        ):
            choices = field_choices(name)
            if getattr(self, name) not in choices:
                raise LsllmError(
                    f"--{flag(name)} must be one of {', '.join(choices)}, not {getattr(self, name)!r}"
                )
        for name in ("max_length", "lora_r", "batch_size", "grad_accum", "logging_steps"):
            if getattr(self, name) < 1:
                raise LsllmError(f"--{flag(name)} must be at least 1, not {getattr(self, name)}")
        for name in ("max_train_examples", "max_dev_examples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise LsllmError(f"--{flag(name)} must be at least 1, not {getattr(self, name)}")
        if self.bidirectional_layers is not None:
            layer_slice(self.bidirectional_layers)
            if self.attention != "bidirectional":
                raise LsllmError(
                    "--bidirectional-layers unmasks some layers of a bidirectional run; leave out"
                    " --attention causal"
                )
        if self.mntp_steps < 0 or not 0 < self.mntp_mask_ratio < 1:
            raise LsllmError(
                f"--mntp-steps must be at least 0 (not {self.mntp_steps}) and --mntp-mask-ratio between 0"
                f" and 1 (not {self.mntp_mask_ratio})"
            )
        if self.mntp_steps and self.attention != "bidirectional":
            raise LsllmError(
                "--mntp-steps adapts a decoder to bidirectional attention; use it with --attention"
                " bidirectional or --bidirectional-layers"
            )
        if self.quantize != "none" and self.precision == "fp32":
            raise LsllmError(
                f"--quantize {self.quantize} computes in bf16; leave out --precision fp32 or --quantize"
            )
        if self.text_pair and len(self.text_field) != 2:
            raise LsllmError("--text-pair needs exactly two --text-field flags")
        if self.task == "token" and (self.template or self.chat_template):
            raise LsllmError(
                "--template and --chat-template are for sequence runs; leave them out for --task token"
            )
        if self.metric is not None and (self.task != "sequence" or self.multi_label or self.label_columns):
            raise LsllmError(
                "--metric is for single-label sequence runs (token runs select on entity F1, multi-label runs"
                " on micro-F1 with tuned thresholds); leave it out"
            )
        if self.task != "sequence" and (self.multi_label or self.label_columns or self.threshold_per_label):
            raise LsllmError(
                f"--multi-label, --label-columns and --threshold-per-label are for --task sequence, not"
                f" --task {self.task}; leave them out"
            )
        if self.task == "regression" and (
            self.labels
            or self.head_init != "random"
            or self.class_weights != "none"
            or self.template == "auto"
        ):
            raise LsllmError(
                "--labels, --head-init label-words, --class-weights and --template auto (--preset prompt) are"
                " for classes; leave them out for --task regression"
            )
        if self.labels and self.label_columns:
            raise LsllmError("--labels and --label-columns both name the labels; give only --label-columns")
        if self.template not in (None, "auto") and "{text}" not in self.template:
            raise LsllmError(
                f"--template {self.template!r} has no {{text}}; put {{text}} where the text goes"
            )
        if self.chat_template and self.template == "auto":
            raise LsllmError(
                "--template auto uses the model's chat template when it has one; leave out --chat-template"
            )
        if self.instruction is not None and not self.instruction.strip():
            raise LsllmError(
                "--instruction is empty; give the sentence to ask of each text, or leave it out for"
                " 'Classify the text.'"
            )
        if self.instruction is not None and self.template != "auto":
            raise LsllmError(
                "--instruction fills --template auto's prompt; add --template auto (or --preset prompt), or"
                " write the instruction into your own --template"
            )
        if self.chat_template and not self.template:
            raise LsllmError("--chat-template needs a --template, e.g. '{text}' to send the text as it is")
        for entry in self.label_words or []:
            if "=" not in entry or not entry.split("=", 1)[0]:
                raise LsllmError(f"--label-words takes LABEL=WORD pairs, not {entry!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The options as YAML takes them; data given in Python as a datasets.Dataset is described, since
        a saved run keeps no copy of it."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for role in DATA_ROLES:
            value = values[role]
            if isinstance(value, os.PathLike):
                values[role] = os.fspath(value)
            elif value is not None and not isinstance(value, str):
                values[role] = f"a {type(value).__name__} of {len(value)} rows, given in Python"
        return {name: list(value) if isinstance(value, list) else value for name, value in values.items()}

    def save(self, path: Path) -> None:
        """Write every option, and YAML's end-of-document marker, so that a cut-short copy is detectable."""
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False, explicit_end=True))

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from option names and values; a `preset` key fills in every value not given."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key.replace("-", "_"): value for key, value in values.items()}
        preset = values.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                raise LsllmError(f"unknown preset {preset!r} in {source}; use one of: {', '.join(PRESETS)}")
            values = {**PRESETS[preset].values, **values}
        unknown = sorted(set(values) - known)
        if unknown:
            raise LsllmError(
                f"unknown key(s) in {source}: {', '.join(unknown)}; see 'lsllm train --help' for names"
            )
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(read_yaml(path), source=str(path))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The options a YAML config file sets, as written (no defaults filled in)."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise LsllmError(f"config file not found: {path}; check the --config path") from None
    except (OSError, yaml.YAMLError) as error:
        reason = first_line(error)
        raise LsllmError(f"cannot read config file {path}: {reason}; fix the YAML") from None
    if not isinstance(values, dict):
        raise LsllmError(f"config file {path} must be a mapping of option: value")
    return values


def layer_slice(spec: str) -> slice:
    """`--bidirectional-layers` as the slice of the backbone's layer list it names."""
    parts = str(spec).split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = (int(part) if part.strip() else None for part in parts)
    except ValueError:
        raise LsllmError(
            f"--bidirectional-layers takes a slice of layer numbers such as -4: (the last 4), :4 or 8:,"
            f" not {spec!r}"
        ) from None
    return slice(start, stop)


def flag(name: str) -> str:
    return name.replace("_", "-")


def field_choices(name: str) -> tuple[str, ...]:
    return next(f.metadata["choices"] for f in dataclasses.fields(TrainConfig) if f.name == name)
