"""Turn bench.perf's records into table.md, results.json and perf.png: every figure next to its baseline."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from matplotlib.figure import Figure

from bench.common import DASH, INT8, TASK_NAMES, markdown_table, number, percent, save_png
from bench.runtimes import runtime_section
from lsllm.atomic import write_text_atomic

TRAIN_TARGET, PREDICT_TARGET = 1.5, 2.0
# lsllm's prediction records and what their measurement names get: the default, then --precision int8.
PREDICT_VARIANTS = {"lsllm": "", INT8: " int8"}
SYSTEM_LABELS = {"lsllm": "lsllm", INT8: "lsllm --precision int8", "baseline": "baseline (pipeline)"}


@dataclass(frozen=True)
class Ratio:
    """One measurement of both systems; `better` says whether a higher or a lower figure wins."""

    measurement: str
    lsllm: float
    baseline: float
    better: str
    target: float | None = None

    @property
    def ratio(self) -> float:
        return self.lsllm / self.baseline

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


# Dense bf16 peaks from the datasheets (FLOP/s), for MFU; other GPUs are measured against torch.matmul.
DATASHEET_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}
# LoRA training FLOPs per token, as NeMo counts them: 4 x the backbone's weights (forward 2N, backward
# through the frozen weights 2N; the adapters' own work is small).
LORA_FLOPS_PER_WEIGHT = 4


def _find(records: list[dict], **keys) -> dict | None:
    return next((r for r in records if all(r.get(k) == v for k, v in keys.items())), None)


def _backbone(quantize: str | None) -> str:
    return "" if quantize in (None, "none") else f" {quantize}"


def _pairs(
    records: list[dict], part: str, *fields: str, variant: str = "lsllm"
) -> list[tuple[tuple, dict, dict]]:
    """(key, `variant` record, baseline record) for every key both systems have, in run order."""
    keys = list(dict.fromkeys(tuple(r.get(f) for f in fields) for r in records if r["part"] == part))
    found = []
    for key in keys:
        where = dict(zip(fields, key, strict=True))
        ours, theirs = (
            _find(records, part=part, system=variant, **where),
            _find(records, part=part, system="baseline", **where),
        )
        if ours and theirs:
            found.append((key, ours, theirs))
    return found


def _batch(record: dict, size: int) -> dict:
    return next(b for b in record["batches"] if b["batch_size"] == size)


def ratios(records: list[dict]) -> list[Ratio]:
    rows = []
    for (task, mode, quantize), ours, theirs in _pairs(records, "train", "task", "mode", "quantize"):
        name = f"train {TASK_NAMES.get(task, task)} {mode}{_backbone(quantize)}"
        rows.append(
            Ratio(
                f"{name}: real tokens/s",
                ours["tokens_per_second"],
                theirs["tokens_per_second"],
                "higher",
                TRAIN_TARGET,
            )
        )
        rows.append(Ratio(f"{name}: peak RSS (MB)", ours["peak_rss_mb"], theirs["peak_rss_mb"], "lower"))
        if ours.get("peak_gpu_mb") and theirs.get("peak_gpu_mb"):
            rows.append(
                Ratio(f"{name}: peak GPU memory (MB)", ours["peak_gpu_mb"], theirs["peak_gpu_mb"], "lower")
            )
    for variant, suffix in PREDICT_VARIANTS.items():
        for (task,), ours, theirs in _pairs(records, "predict", "task", variant=variant):
            for size in [b["batch_size"] for b in ours["batches"]]:
                a, b = _batch(ours, size), _batch(theirs, size)
                name = f"predict {TASK_NAMES.get(task, task)} batch {size}{suffix}"
                rows.append(
                    Ratio(
                        f"{name}: examples/s",
                        a["examples_per_second"],
                        b["examples_per_second"],
                        "higher",
                        PREDICT_TARGET,
                    )
                )
                rows.append(Ratio(f"{name}: p50 latency (ms)", a["p50_ms"], b["p50_ms"], "lower"))
                rows.append(Ratio(f"{name}: p99 latency (ms)", a["p99_ms"], b["p99_ms"], "lower"))
            name = f"predict {TASK_NAMES.get(task, task)}{suffix}: peak RSS (MB)"
            rows.append(Ratio(name, ours["peak_rss_mb"], theirs["peak_rss_mb"], "lower"))
    return rows


def _peaks(records: list[dict]) -> dict[str, float]:
    found = _find(records, part="flops")
    return {p["dtype"]: p["flops_per_second"] for p in found["peaks"]} if found else {}


def _flops(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value / 1e12:.1f} TFLOP/s" if value >= 1e12 else f"{value / 1e9:.1f} GFLOP/s"


def _x(ours: float | None, theirs: float | None) -> str:
    return f"**{ours / theirs:.2f}x**" if ours and theirs else DASH


def _share(flops: float, seconds: float, peaks: dict[str, float], dtype: str) -> tuple[float, float | None]:
    achieved = flops / seconds
    return achieved, (achieved / peaks[dtype] if dtype in peaks else None)


def mfu_peak(records: list[dict]) -> tuple[float | None, str]:
    """The peak MFU is taken against: the GPU's datasheet where known, else the measured bf16 matmul."""
    gpu = next((r["hardware"].get("gpu") for r in records if r.get("hardware", {}).get("gpu")), None)
    if gpu is None:
        return None, ""
    known = next((peak for name, peak in DATASHEET_BF16.items() if name in gpu), None)
    if known is not None:
        return known, f"the {gpu}'s dense bf16 peak from its datasheet, {known / 1e12:.0f} TFLOP/s"
    measured = _peaks(records).get("bf16")
    return measured, f"the measured bf16 torch.matmul peak of the {gpu}"


def mfu(record: dict, peak: float | None) -> float | None:
    """Model FLOPs utilisation with LoRA counted as 4 x the backbone's weights per real token."""
    if peak is None or "params" not in record:
        return None
    tokens_per_second = record["real_tokens"] / record["flop_seconds"]
    return tokens_per_second * LORA_FLOPS_PER_WEIGHT * record["params"] / peak


def train_table(records: list[dict]) -> list[str]:
    peaks, gpu = _peaks(records), any(r.get("peak_gpu_mb") for r in records)
    peak, _ = mfu_peak(records)
    header = ["Task", "Attention", "System", "Examples/s", "Real tokens/s", "train_runtime (s)"]
    header += ["of it dev eval (s)", "Peak RSS (MB)", *(["Peak GPU (MB)"] if gpu else [])]
    header += ["Achieved FLOP/s", "of matmul peak", *(["MFU (4N)"] if peak else [])]
    rows = []
    for (task, mode, quantize), ours, theirs in _pairs(records, "train", "task", "mode", "quantize"):
        shares = {}
        for record in (ours, theirs):
            shares[record["system"]] = _share(
                record["flops"], record["flop_seconds"], peaks, record["precision"]
            )
            system = "lsllm" if record["system"] == "lsllm" else "baseline (HF + peft + Trainer)"
            rows.append(
                [
                    TASK_NAMES.get(task, task),
                    mode + _backbone(quantize),
                    system,
                    number(record["examples_per_second"], 2),
                    number(record["tokens_per_second"]),
                    number(record["train_runtime"]),
                    number(record["eval_seconds"]),
                    number(record["peak_rss_mb"], 0),
                    *([number(record.get("peak_gpu_mb"), 0)] if gpu else []),
                    _flops(shares[record["system"]][0]),
                    percent(shares[record["system"]][1], unit="%"),
                    *([percent(mfu(record, peak), unit="%")] if peak else []),
                ]
            )
        rows.append(
            [
                "",
                "",
                "lsllm / baseline",
                _x(ours["examples_per_second"], theirs["examples_per_second"]),
                _x(ours["tokens_per_second"], theirs["tokens_per_second"]),
                _x(ours["train_runtime"], theirs["train_runtime"]),
                _x(ours["eval_seconds"], theirs["eval_seconds"]),
                _x(ours["peak_rss_mb"], theirs["peak_rss_mb"]),
                *([_x(ours.get("peak_gpu_mb"), theirs.get("peak_gpu_mb"))] if gpu else []),
                _x(shares["lsllm"][0], shares["baseline"][0]),
                "",
                *([_x(mfu(ours, peak), mfu(theirs, peak))] if peak else []),
            ]
        )
    return markdown_table(header, rows)


def ddp_table(records: list[dict]) -> list[str]:
    """lsllm on several GPUs against lsllm on one, same task, mode and backbone."""
    rows = []
    for record in (r for r in records if r["part"] == "ddp"):
        where = {k: record.get(k) for k in ("task", "mode", "quantize")}
        alone = _find(records, part="train", system="lsllm", **where)
        speedup = record["tokens_per_second"] / alone["tokens_per_second"] if alone else None
        rows.append(
            [
                f"{TASK_NAMES.get(record['task'], record['task'])} {record['mode']}"
                + _backbone(record["quantize"]),
                str(record["gpus"]),
                number(record["tokens_per_second"]),
                number(alone["tokens_per_second"]) if alone else DASH,
                DASH if speedup is None else f"{speedup:.2f}x",
                DASH if speedup is None else percent(speedup / record["gpus"], unit="%"),
            ]
        )
    header = ["Task", "GPUs", "Real tokens/s", "on 1 GPU", "speed-up", "scaling efficiency"]
    return markdown_table(header, rows)


def predict_table(records: list[dict]) -> list[str]:
    peaks = _peaks(records)
    header = ["Task", "Batch", "System", "Examples/s", "p50 per call (ms)", "p99 per call (ms)"]
    header += ["max per call (ms)", "Achieved FLOP/s", "of matmul peak", "Peak RSS (MB)"]
    rows = []
    for (task,), _, theirs in _pairs(records, "predict", "task"):
        ours = [r for v in PREDICT_VARIANTS if (r := _find(records, part="predict", task=task, system=v))]
        for size in [b["batch_size"] for b in theirs["batches"]]:
            achieved = {}
            for record in (*ours, theirs):
                batch = _batch(record, size)
                achieved[record["system"]], share = _share(
                    record["flops"], batch["seconds"], peaks, record["precision"]
                )
                rows.append(
                    [
                        TASK_NAMES.get(task, task),
                        str(size),
                        SYSTEM_LABELS[record["system"]],
                        number(batch["examples_per_second"]),
                        number(batch["p50_ms"]),
                        number(batch["p99_ms"]),
                        number(batch["max_ms"]),
                        _flops(achieved[record["system"]]),
                        percent(share, unit="%"),
                        number(record["peak_rss_mb"], 0),
                    ]
                )
            b = _batch(theirs, size)
            for record in ours:
                a = _batch(record, size)
                rows.append(
                    [
                        "",
                        "",
                        f"{SYSTEM_LABELS[record['system']]} / baseline",
                        _x(a["examples_per_second"], b["examples_per_second"]),
                        _x(a["p50_ms"], b["p50_ms"]),
                        _x(a["p99_ms"], b["p99_ms"]),
                        _x(a["max_ms"], b["max_ms"]),
                        _x(achieved[record["system"]], achieved["baseline"]),
                        "",
                        _x(record["peak_rss_mb"], theirs["peak_rss_mb"]),
                    ]
                )
    return markdown_table(header, rows)


FLOP_RULES = [
    "FLOPs are counted from the model's shapes ([flops.py](../../flops.py)), over real tokens only (padding",
    "is work a system chooses to do). Per token and layer: 2·in·out for each linear layer (q, k, v, o, gate,",
    "up, down) and 4·L·head_dim·heads for the attention scores and values of a sequence of L real tokens.",
    "Prediction is one forward pass (lsllm merges LoRA into the weights; the pipeline has none). Training is",
    "2x the linear layers (the frozen weights' backward pass computes input gradients only, no weight",
    "gradients) + 3x attention (its backward computes dQ, dK, dV) + 3x LoRA (2·r·(in+out) per adapted layer,",
    "forward plus input and weight gradients): about 2x the forward pass. Embedding lookups and the head",
    "(under 0.1%) are left out. Achieved FLOP/s = counted FLOPs / time; for training the time is",
    "train_runtime minus the dev evaluation. The peak is the best torch.matmul FLOP/s on the model's MLP",
    "shape (tokens x hidden @ hidden x intermediate) with the same thread count, for the dtype the run used.",
]


def flops_section(records: list[dict]) -> list[str]:
    lines = ["## FLOP counting and the matmul peak", "", *FLOP_RULES, ""]
    found = _find(records, part="flops")
    if not found:
        return [*lines, "The matmul peak was not measured in this run (`--only` without `flops`)."]
    rows = []
    for peak in found["peaks"]:
        emulated = peak["dtype"] == "bf16" and peak["device"] == "cpu" and not found["bf16_native"]
        rows.append(
            [
                peak["dtype"] + (" (emulated: no bf16 units on this CPU)" if emulated else ""),
                peak["device"],
                " x ".join(map(str, peak["shape"])),
                str(peak["threads"]),
                _flops(peak["flops_per_second"]),
            ]
        )
    header = ["dtype", "device", "shape (tokens x hidden x intermediate)", "threads", "peak"]
    return [*lines, *markdown_table(header, rows)]


def summary(rows: list[Ratio]) -> list[str]:
    table = []
    for row in rows:
        target = DASH if row.target is None else f"{row.target:g}x"
        table.append(
            [
                row.measurement,
                number(row.lsllm, 2),
                number(row.baseline, 2),
                f"**{row.ratio:.2f}x**",
                row.better,
                target,
            ]
        )
    header = ["Measurement", "lsllm", "baseline", "lsllm / baseline", "better", "target"]
    return markdown_table(header, table)


DIFFERENCES = [
    "- Training batches: lsllm packs the examples of each shuffled batch side by side (padding-free,",
    "  attention kept inside each example); the baseline pads each batch to its longest example",
    "  (DataCollatorWithPadding / DataCollatorForTokenClassification). Both shuffle (random sampler).",
    "- Sequence pooling: lsllm pools the last token (causal) or the mean (bidirectional); the baseline's",
    "  AutoModelForSequenceClassification always takes the last token. The bidirectional baseline sets",
    "  config.is_causal = False, checked with lsllm's attention probe.",
    "- Prediction: lsllm merges LoRA on load (the pipeline runs the plain model: the same computation)",
    "  and its forward pass packs each padded batch too, where that saves rows. lsllm takes CoNLL",
    "  sentences as word lists, the pipeline their space-joined text (the same tokens); lsllm aligns words",
    "  and builds entity spans, the pipeline labels every token. p99 over few calls (batch 64) is the max.",
]


def setup_section(records: list[dict], meta: dict) -> list[str]:
    """Model, budget, number format, versions, hardware, what differs between the systems, the command."""
    first = next(r for r in records if "versions" in r)
    shapes = ", ".join(f"{k} {v}" for k, v in first["shapes"].items())
    parts = {r["part"] for r in records}
    notes = list(dict.fromkeys(note for r in records for note in r.get("notes", [])))
    chosen = {r["precision"] for r in records if r["part"] in ("train", "predict") and r["system"] != INT8}
    precisions = ", ".join(sorted(chosen))  # int8 is named in its own rows
    versions = ", ".join(f"{k} {v}" for k, v in first["versions"].items())
    hardware = ", ".join(f"{k} {v}" for k, v in first["hardware"].items())
    settings = meta["settings"]
    lines = ["## Setup", "", f"- Model: {meta['model']} ({shapes})"]
    if "train" in parts:
        lines.append(
            f"- Training: {meta['train_examples']} seeded examples per task, {meta['epochs']} epoch,"
            f" batch {settings['batch_size']}, learning rate {settings['learning_rate']},"
            f" LoRA r={settings['lora_r']} alpha={settings['lora_alpha']:g}"
            f" dropout={settings['lora_dropout']} on q, k, v, o, gate, up, down, seed {meta['seed']};"
            f" a {meta['dev_examples']}-example dev set evaluated once, at the end of the epoch"
            " (inside train_runtime, for both systems, as is one checkpoint save)"
        )
    if "predict" in parts:
        lines.append(
            f"- Prediction: {meta['predict_examples']} inputs (SST-2 dev sentences, CoNLL-2003 test"
            f" sentences), batch sizes {', '.join(map(str, meta['batch_sizes']))}; one warm-up call per batch"
            " size; a call is one predict / pipeline call on `batch size` inputs; lsllm's default attention"
            " per task (sequence causal, token bidirectional) for both systems"
        )
    if precisions:
        lines.append(
            f"- Number format: {precisions} (lsllm's precision 'auto'; the baseline is given the same),"
            " except in the rows of lsllm --precision int8"
        )
    dirty = " (working tree had uncommitted changes)" if meta["working_tree_dirty"] else ""
    lines += [
        f"- Versions: {versions}{dirty}",
        f"- Hardware: {hardware}",
        f"- Run: {meta['started']} to {meta['finished']}"
        + (
            f"; load average {meta['load_before']:.1f} before, {meta['load_after']:.1f} after"
            if "load_before" in meta
            else ""
        ),
        "",
    ]
    if parts & {"train", "predict"}:
        lines += ["What differs between the systems, on purpose or not:", "", *DIFFERENCES]
        lines += [*(f"- {note}" for note in notes), ""]
    if meta["failed"]:
        lines += [f"Failed jobs (see the logs under the work folder): {', '.join(meta['failed'])}", ""]
    return [*lines, "Command:", "", "```", meta["command"], "```"]


def render(records: list[dict], meta: dict) -> str:
    """The whole table.md; a part that did not run (--only, or a failed job) leaves its section out."""
    rows = ratios(records)
    lines = [
        "# Speed and memory: lsllm / the transformers recipe",
        "",
        "Every figure as a ratio lsllm / baseline, measured in one run on the same model, data and machine.",
        f"Targets: {TRAIN_TARGET:g}x training throughput, {PREDICT_TARGET:g}x prediction throughput.",
        "",
    ]
    if rows:
        lines += [*summary(rows), ""]
    if _pairs(records, "train", "task", "mode", "quantize"):
        peak, source = mfu_peak(records)
        lines += [
            "## Training",
            "",
            "One process per system. Real tokens exclude padding, counted as each system tokenises them.",
        ]
        if peak:
            lines.append(
                "MFU (4N): real tokens/s x 4 x the backbone's weights (LoRA training counted as about 4 FLOPs"
                f" per weight and token, as NeMo counts it) over {source}; steps only, without the dev"
                " evaluation."
            )
        lines += ["", *train_table(records), ""]
    if any(r["part"] == "ddp" for r in records):
        lines += [
            "## Several GPUs (DDP)",
            "",
            "lsllm under torchrun, each process with the benchmark's batch (so a step trains as many times",
            "the examples as there are GPUs); real tokens/s over all GPUs, against lsllm on one.",
            "",
            *ddp_table(records),
            "",
        ]
    if _pairs(records, "predict", "task"):
        lines += ["## Prediction", "", "One process per system and task.", "", *predict_table(records), ""]
    lines += runtime_section(records)
    lines += [*flops_section(records), "", *setup_section(records, meta)]
    return "\n".join(lines) + "\n"


def plot(rows: list[Ratio], path: Path) -> None:
    """Ratio bars: throughput (higher is better, with the targets) and memory / latency (lower is better)."""
    panels = [
        ("Throughput, lsllm / baseline (higher is better)", [r for r in rows if r.better == "higher"]),
        ("Memory and latency, lsllm / baseline (lower is better)", [r for r in rows if r.better == "lower"]),
    ]
    panels = [(title, chosen) for title, chosen in panels if chosen]
    figure = Figure(figsize=(13, 4.8 * len(panels)), layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (title, chosen) in zip(axes, panels, strict=True):
        positions = range(len(chosen))
        colors = ["C0" if r.measurement.startswith("train") else "C1" for r in chosen]
        bars = ax.bar(positions, [r.ratio for r in chosen], color=colors)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
        ax.axhline(1, color="black", linewidth=1)
        for x, row in zip(positions, chosen, strict=True):
            if row.target is not None:
                ax.hlines(row.target, x - 0.4, x + 0.4, colors="C3", linestyles="dashed")
        if any(r.target is not None for r in chosen):
            ax.plot([], [], color="C3", linestyle="dashed", label="target")
            ax.legend(fontsize=8)
        ax.set_xticks(list(positions), [r.measurement for r in chosen], rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, max([r.ratio for r in chosen] + [r.target or 0 for r in chosen]) * 1.15)
    save_png(figure, path)


def write_report(results: Path, records: list[dict], meta: dict) -> list[Path]:
    """table.md, results.json and (when both systems of something ran) perf.png under `results`."""
    results.mkdir(parents=True, exist_ok=True)
    rows = ratios(records)
    table, combined, figure = results / "table.md", results / "results.json", results / "perf.png"
    write_text_atomic(table, render(records, meta))
    payload = {"meta": meta, "ratios": [r.to_dict() for r in rows], "records": records}
    write_text_atomic(combined, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    written = [table, combined]
    if rows:
        plot(rows, figure)
        written.append(figure)
    return written
