"""bench.perf's runtime part: one run predicted by lsllm's torch model (fp32, int8, auto) and by its ONNX
export through onnxruntime (fp32, and with onnxruntime's int8 weights), at each batch size; every figure
a ratio to torch fp32, measured in the same bench.perf run on the same inputs.

    python -m bench.perf --only runtime     # SmolLM2-135M on SST-2 sentences
"""

from __future__ import annotations

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


def onnx_folder(run: Path) -> Path:
    return run.parent / f"{run.name}__onnx"


def export_onnx(run: Path) -> None:
    """The run's ONNX export with its int8 graph, as `lsllm export --format onnx --int8` writes it."""
    from lsllm.export import export_run

    export_run(run, onnx_folder(run), format="onnx", int8=True)


def model_megabytes(run: Path, precision: str) -> float:
    """The size of the graph a system runs, with its weights."""
    from lsllm.artifacts import ONNX_INT8_MODEL, ONNX_MODEL

    name = ONNX_INT8_MODEL if precision == "int8" else ONNX_MODEL
    return sum(path.stat().st_size for path in onnx_folder(run).glob(f"{name}*")) / 2**20


def measure(run: Path, system: str, texts: list[str], batch_sizes: list[int], latency) -> dict:
    """Examples/s and per-call latency of `system` predicting `texts`, and the probabilities it gives."""
    from lsllm import load
    from lsllm.modeling.precision import resolve_precision

    runtime, precision = RUNTIME_SYSTEMS[system]
    classifier = load(onnx_folder(run) if runtime == "onnx" else run, "cpu", precision, runtime)

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
        "model_mb": model_megabytes(run, precision) if runtime == "onnx" else None,
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
