"""The README.md of an export: what the model is, how it was trained, how well it did, how to load it."""

from __future__ import annotations

from lsllm.config import TrainConfig
from lsllm.data.labels import LabelMap

# The scores a card shows, per task and label shape; correlations and MSE as numbers, the rest in percent.
HEADLINES = {
    "token": ("precision", "recall", "f1"),
    "single": ("accuracy", "macro_f1"),
    "multi": ("micro_f1", "macro_f1"),
    "regression": ("mse", "pearson", "spearman"),
}
WHAT = {
    "token": "one tag per word",
    "single": "one label per text",
    "multi": "any number of labels per text, each with its own sigmoid probability and threshold",
    "regression": "a number per text",
}


def _shown(scores: dict, key: str) -> str:
    value = scores.get(key)
    if value is None:
        return "n/a"
    return f"{value:.4f}" if key in HEADLINES["regression"] else f"{100 * value:.1f}"


def model_card(
    settings: TrainConfig, labels: LabelMap, metrics: dict, lora: dict, format: str, merged: bool
) -> str:
    """A README that says what the model is, how it was trained, how well it did and how to load it."""
    kind_of_task = "token" if settings.task == "token" else labels.shape
    offsets = kind_of_task == "single" and settings.metric == "macro_f1"  # tuned on dev, in offsets.json
    keys = HEADLINES[kind_of_task]
    rows = [
        f"| {split} | " + " | ".join(_shown(metrics[split], key) for key in keys) + " |"
        for split in ("dev", "test")
        if split in metrics
    ]
    per_text = settings.task != "token"
    pipeline = "text-classification" if per_text else "token-classification"
    how = "merged into the weights" if merged else "kept apart from the weights (loading needs peft)"
    table = ["| split | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys), *rows, ""]
    return "\n".join(
        [
            "---",
            "library_name: transformers",
            f"pipeline_tag: {pipeline}",
            f"tags: [lsllm, label-supervised, {'lora-merged' if merged else 'lora'}]",
            "---",
            "",
            f"# {settings.task} model trained with lsllm",
            "",
            f"- Base model: `{settings.model}`",
            f"- Task: {settings.task}, {WHAT[kind_of_task]}; {len(labels)} output(s):"
            f" {', '.join(map(str, labels.names))}",
            *(
                [
                    "- Decision thresholds, tuned on dev: `thresholds.json` (lsllm applies them; a plain"
                    " transformers pipeline gives the sigmoid probabilities only)"
                ]
                if labels.shape == "multi"
                else []
            ),
            *(
                [
                    "- Label offsets, tuned on dev for macro-F1: `offsets.json` (lsllm adds them to the"
                    " logits before choosing; a plain transformers pipeline gives the model's own"
                    " probabilities)"
                ]
                if offsets
                else []
            ),
            f"- Attention: {settings.attention}" + (f"; pooling: {settings.pooling}" if per_text else ""),
            f"- Training data: `{settings.train}`; model selected on `{settings.dev}`",
            f"- LoRA r={lora['r']}, alpha={lora['lora_alpha']:g}, dropout={lora['lora_dropout']:g}"
            f" on {', '.join(lora['target_modules'])}; {how}",
            f"- {settings.epochs:g} epochs at learning rate {settings.learning_rate:g}",
            f"- Export format: {format}",
            "",
            *(table if rows else []),
            "## Use",
            "",
            "With lsllm installed, as `lsllm predict path/to/this/folder ...` or:",
            "",
            "```python",
            "import lsllm",
            "",
            'model = lsllm.load("path/to/this/folder")',
            "```",
            "",
            *USAGE[format](settings, pipeline, "offsets" if offsets else kind_of_task),
            *_input_format(settings),
        ]
    )


def _auto_class(settings: TrainConfig) -> str:
    kind = "Token" if settings.task == "token" else "Sequence"
    return f"AutoModelFor{kind}Classification"


def _loading_code(auto: str, pipeline: str, *first_lines: str) -> list[str]:
    """The Python block that loads this folder with an Auto class and a pipeline."""
    return [
        "```python",
        *first_lines,
        f"from transformers import {auto}, pipeline",
        "",
        f'model = {auto}.from_pretrained("path/to/this/folder")',
        f'classify = pipeline("{pipeline}", model="path/to/this/folder")',
        "```",
        "",
    ]


def _lsllm_usage(settings: TrainConfig, pipeline: str, kind: str) -> list[str]:
    auto = _auto_class(settings)
    return [
        "With plain transformers, once lsllm is imported (no `trust_remote_code` needed):",
        "",
        *_loading_code(auto, pipeline, "import lsllm  # registers the model type with transformers"),
    ]


def _transformers_usage(settings: TrainConfig, pipeline: str, kind: str) -> list[str]:
    auto = _auto_class(settings)
    bidirectional = settings.attention == "bidirectional"
    attention = "bidirectional attention through `is_causal: false` in config.json" if bidirectional else ""
    lines = [
        "With plain transformers, no lsllm needed: this folder holds transformers' own class"
        + (f", with {attention}." if attention else "."),
        "",
        *_loading_code(auto, pipeline),
    ]
    if settings.task == "token":
        lines += [
            "The pipeline tags every sub-token; lsllm trained the first sub-token of each word, and",
            "`lsllm predict` gives words and entities.",
            "",
        ]
    if bidirectional:
        lines += [
            "Serving stacks other than transformers may run decoder architectures causally whatever",
            "`is_causal` says; check their logits against transformers' before relying on them.",
            "",
        ]
    return [
        *lines,
        f"lsllm cut inputs at {settings.max_length} tokens; transformers does not unless asked"
        f" (`truncation=True, max_length={settings.max_length}`).",
        "",
    ]


# What the ONNX card's example does with the logits, per task and label shape (lsllm.decision).
SHOW = {
    "token": ["print([labels[i] for i in logits[0].argmax(-1)])  # per token: each word's first one counts"],
    "single": ["print(labels[int(logits[0].argmax())])"],
    "offsets": [  # a single-label run trained with --metric macro_f1
        'offsets = json.load(open(f"{folder}/offsets.json"))["offsets"]',
        "print(labels[int((logits[0] + [offsets[str(label)] for label in labels]).argmax())])",
    ],
    "multi": [
        'thresholds = json.load(open(f"{folder}/thresholds.json"))["thresholds"]',
        "probs = 1 / (1 + np.exp(-logits[0]))",
        "print([label for label, p in zip(labels, probs) if p >= thresholds[str(label)]])",
    ],
    "regression": ["print(float(logits[0, 0]))"],
}


def _onnx_usage(settings: TrainConfig, pipeline: str, kind: str) -> list[str]:
    return [
        "`lsllm predict/eval/serve` run it through onnxruntime (`--runtime onnx`, its default). With",
        "onnxruntime and the tokenizer alone (no torch, no lsllm: `pip install onnxruntime tokenizers`):",
        "",
        "```python",
        "import json",
        "",
        "import numpy as np",
        "import onnxruntime",
        "from tokenizers import Tokenizer",
        "",
        'folder = "path/to/this/folder"',
        'tokenizer = Tokenizer.from_file(f"{folder}/tokenizer.json")',
        'session = onnxruntime.InferenceSession(f"{folder}/model.onnx")',
        'labels = json.load(open(f"{folder}/labels.json"))["names"]',
        "",
        'ids = np.array([tokenizer.encode("a text to classify").ids])',
        'feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}',
        'logits = session.run(["logits"], feed)[0]',
        *SHOW[kind],
        "```",
        "",
        "Batches of any size and length: pad the token ids with the tokenizer's pad token on either side",
        "and give 0 in the attention mask there.",
        "",
    ]


def _input_format(settings: TrainConfig) -> list[str]:
    """How to build the prompt the run put each text into, for a stack that does not carry it."""
    if not settings.template:
        return []
    lines = [
        "## Input format",
        "",
        "The run put each text into a prompt, which this checkpoint does not carry: lsllm builds it",
        "by itself; anything else must build it before classifying:",
        "",
        "```python",
        f"TEMPLATE = {settings.template!r}",
        "prompt = TEMPLATE.format(text=text)" + (" # text_pair=... for pairs" if settings.text_pair else ""),
    ]
    if settings.chat_template:
        lines += [
            'messages = [{"role": "user", "content": prompt}]',
            "prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)",
            "inputs = tokenizer(prompt, add_special_tokens=False, return_tensors='pt')",
        ]
    else:
        lines.append("inputs = tokenizer(prompt, return_tensors='pt')")
    return [
        *lines,
        "```",
        "",
        "For a text longer than the run's --max-length, lsllm cuts the text, never the template.",
        "",
    ]


USAGE = {"lsllm": _lsllm_usage, "transformers": _transformers_usage, "onnx": _onnx_usage}
