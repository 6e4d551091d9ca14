"""bench.perf's runtime part: one run predicted by lsllm's torch model (fp32, int8, auto) and by its ONNX
export through onnxruntime (fp32, and with onnxruntime's int8 weights), at each batch size; every figure
a ratio to torch fp32, measured in the same bench.perf run on the same inputs.

    python -m bench.perf --only runtime     # SmolLM2-135M on SST-2 sentences
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.common import DASH, markdown_table, number

# system: (what runs it, number format)
RUNTIME_SYSTEMS = {
    "torch-fp32": ("torch", "fp32"),
    "torch-int8": ("torch", "int8"),
    "torch-auto": ("torch", "auto"),
    "onnx-fp32": ("onnx", "fp32"),
    "onnx-int8": ("onnx", "int8"),
}
REFERENCE = "torch-fp32"
TASK = "sst2"


def onnx_folder(run: Path, precision: str) -> Path:
    return run.parent / f"{run.name}__onnx-{precision}"


def export_onnx(run: Path) -> None:
    """The run's ONNX export, and a copy of it whose graph has onnxruntime's int8 weights."""
    from lsllm.artifacts import ONNX_MODEL
    from lsllm.export import export_run
    from lsllm.modeling.onnx_model import quantize_to_int8

    fp32, int8 = onnx_folder(run, "fp32"), onnx_folder(run, "int8")
    export_run(run, fp32, format="onnx")
    shutil.rmtree(int8, ignore_errors=True)
    shutil.copytree(fp32, int8, ignore=shutil.ignore_patterns(f"{ONNX_MODEL}*"))
    quantize_to_int8(fp32 / ONNX_MODEL, int8 / ONNX_MODEL)


def model_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("model.onnx*"))


def measure(run: Path, system: str, texts: list[str], batch_sizes: list[int], latency) -> dict:
    """Examples/s and per-call latency of `system` predicting `texts`, and the probabilities it gives."""
    from lsllm import load
    from lsllm.modeling.precision import resolve_precision

    runtime, precision = RUNTIME_SYSTEMS[system]
    if runtime == "onnx":
        classifier = load(onnx_folder(run, precision))
    else:
        classifier = load(run, device="cpu", precision=precision)

    def call(chunk: list, batch_size: int) -> list:
        return classifier.predict(chunk, batch_size=batch_size)

    batches = [latency(call, texts, size) for size in batch_sizes]
    predictions = classifier.predict(texts, batch_size=max(batch_sizes))
    return {
        "part": "runtime",
        "task": TASK,
        "system": system,
        "runtime": runtime,
        "precision": resolve_precision(precision) if precision == "auto" else precision,
        "examples": len(texts),
        "batches": batches,
        "probs": [list(row["probs"].values()) for row in predictions],
        "model_mb": model_bytes(onnx_folder(run, precision)) / 2**20 if runtime == "onnx" else None,
    }


def _batch(record: dict, size: int) -> dict:
    return next(b for b in record["batches"] if b["batch_size"] == size)


def agreement(record: dict, reference: dict) -> tuple[float, float]:
    """The share of inputs given the reference's label, and the largest change of any probability."""
    same, moved = 0, 0.0
    for ours, theirs in zip(record["probs"], reference["probs"], strict=True):
        same += max(range(len(ours)), key=ours.__getitem__) == max(range(len(theirs)), key=theirs.__getitem__)
        moved = max(moved, *(abs(a - b) for a, b in zip(ours, theirs, strict=True)))
    return same / len(record["probs"]), moved


def runtime_section(records: list[dict]) -> list[str]:
    """The runtime part's table: speed at each batch size against torch fp32, and how far each system's
    probabilities move from torch fp32's on the same inputs."""
    found = {r["system"]: r for r in records if r["part"] == "runtime"}
    reference = found.get(REFERENCE)
    if reference is None:
        return []
    header = ["Batch", "System", "Examples/s", "p50 per call (ms)", "p99 per call (ms)", f"/ {REFERENCE}"]
    header += ["labels as torch fp32", "largest prob. change", "peak RSS (MB)", "model files (MB)"]
    rows = []
    for size in [b["batch_size"] for b in reference["batches"]]:
        base = _batch(reference, size)["examples_per_second"]
        for system in RUNTIME_SYSTEMS:
            if system not in found:
                continue
            record, batch = found[system], _batch(found[system], size)
            same, moved = agreement(record, reference)
            rows.append(
                [
                    str(size),
                    system + (f" (chose {record['precision']})" if system.endswith("auto") else ""),
                    number(batch["examples_per_second"]),
                    number(batch["p50_ms"]),
                    number(batch["p99_ms"]),
                    f"**{batch['examples_per_second'] / base:.2f}x**",
                    f"{100 * same:.1f}%",
                    f"{moved:.4f}",
                    number(record["peak_rss_mb"], 0),
                    number(record["model_mb"], 0, DASH),
                ]
            )
    return [
        "## Runtimes: torch and onnxruntime",
        "",
        f"One run (random head and LoRA, {reference['examples']} SST-2 dev sentences), predicted by lsllm"
        " in each runtime and number format, one process each; speed as a ratio to torch fp32 at the same"
        " batch size; the last columns compare each system's probabilities with torch fp32's.",
        "",
        *markdown_table(header, rows, right=range(2, 10)),
        "",
    ]
