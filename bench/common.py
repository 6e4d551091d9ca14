"""What the benchmark scripts share: settings, data reading, child processes, command lines, the
environment record, and the helpers their reports are written with (markdown tables, percentages,
percentiles, PNG files).

Kept light: the scripts start many child processes, so torch, transformers and matplotlib are imported
inside the functions that need them, never here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.datasets import Task

SMOLLM2 = "smollm2-135m"
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"  # --data: the datasets every benchmark reads
RESULTS = ROOT / "bench" / "results"  # the committed results, a folder per benchmark
SCRATCH = Path.home() / ".cache" / "lsllm" / "bench"  # --work: scratch space
# bench.perf's name for lsllm predicting with --precision int8, in its records and its report.
INT8 = "lsllm-int8"
TASK_NAMES = {
    "sst2": "SST-2",
    "sst5": "SST-5",
    "twitter_fin": "Twitter Fin",
    "conll2003": "CoNLL-2003",
    "wnut17": "WNUT-17",
}
DASH = "\u2013"  # en dash, for cells with nothing to show
# The CPU features that decide how fast each number format runs.
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class Settings:
    """One set of hyperparameters for every LoRA system, so they differ only in the method."""

    seed: int = 0
    batch_size: int = 16
    learning_rate: float = 5e-4  # LoRA systems
    encoder_learning_rate: float = 1e-4  # the fully fine-tuned encoder
    lora_r: int = 12
    lora_alpha: float = 32.0
    lora_dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


def fresh_dir(path: Path) -> Path:
    """An empty folder at `path`, whatever an earlier (perhaps killed) run left there."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def read_jsonl(path: Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def task_labels(task: Task, paths: dict[str, Path]) -> list[str]:
    """All labels of a task over all its splits, in a fixed order, so every system uses the same ids."""
    rows = [row for split in paths.values() for row in read_jsonl(split)]
    if task.kind == "sequence":
        found = {row["label"] for row in rows}
        return [label for label in task.label_words if label in found] if task.label_words else sorted(found)
    types = sorted({tag[2:] for row in rows for tag in row["tags"] if tag != "O"})
    return ["O", *(f"{prefix}-{name}" for name in types for prefix in ("B", "I"))]


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(work: Callable[[], Any]) -> tuple[Any, float]:
    """Run `work` and return its result with the wall-clock seconds it took."""
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def run_child(
    module: str, argv: list[str], one: list[str], log: Path, env: dict | None = None
) -> tuple[bool, float]:
    """Run `python -m MODULE ARGV --one ONE` in a process of its own (its own peak memory, and a crash
    loses only this job), its output in `log`; whether it succeeded, and the seconds it took."""
    with log.open("w") as handle:
        child, seconds = timed(
            lambda: subprocess.run(
                [sys.executable, "-m", module, *argv, "--one", *one],
                cwd=ROOT,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
    return child.returncode == 0, seconds


# --- command lines ------------------------------------------------------------------------------------


def argument_parser(module: str, doc: str) -> argparse.ArgumentParser:
    """The parser of `python -m MODULE`: the first paragraph of its docstring `doc`, defaults in --help."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=doc.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def model_parser(name: str, doc: str) -> argparse.ArgumentParser:
    """The parser of a benchmark of one real model (bench.NAME): its whole docstring `doc` as the
    description; --model, --data, --work (bench/work/NAME) and --results (bench/results/NAME)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=SMOLLM2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / name)
    parser.add_argument("--results", type=Path, default=RESULTS / name)
    return parser


def command_line(module: str, argv: list[str] | None) -> str:
    """What was run, as one would type it again: `python -m MODULE` and `argv` (None: this process's)."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


# --- the environment ----------------------------------------------------------------------------------


def git_commit() -> str:
    """The commit checked out in this repository (empty outside a git checkout)."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    return commit.strip()


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor()


def precision() -> str:
    """What lsllm's precision 'auto' picks here (bf16 where the CPU's bf16 units run it fast), and what the
    transformers baselines are given to match it."""
    from lsllm.modeling.precision import resolve_precision

    return resolve_precision("auto")


def environment() -> dict:
    """Versions and hardware, recorded with every run so a table can be traced back to what made it."""
    import peft
    import torch
    import transformers

    from lsllm.modeling.precision import cpu_bf16_speedup, cpu_flags, cpu_has_bf16_units, resolve_precision

    bf16_units = cpu_has_bf16_units()
    return {
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "lsllm": metadata.version("lsllm"),
            "commit": git_commit(),
        },
        "hardware": {
            "cpu": _cpu_name(),
            # Machines of one kind differ: bf16 runs natively on some CPUs and is emulated on others.
            "cpu_features": sorted(cpu_flags() & set(VECTOR_FLAGS)),
            "bf16_units": bf16_units,
            # ... and some CPUs with bf16 units run it slower than fp32: what auto's probe measured.
            "bf16_matmul_speedup": round(cpu_bf16_speedup(), 2) if bf16_units else None,
            "precision_auto": resolve_precision("auto"),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
    }


# --- figures and reports ------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest value with at least `fraction` of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def percent(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    """A fraction in percent, formatted by `spec` and followed by `unit` (0.9123: '91.2', with unit '%'
    '91.2%'); a dash for None."""
    return DASH if value is None else f"{100 * value:{spec}}{unit}"


def number(value: float | None, digits: int = 1, missing: str = DASH) -> str:
    """A number with thousands separators and `digits` decimals; `missing` for None."""
    return missing if value is None else f"{value:,.{digits}f}"


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_table(header: list[str], rows: Iterable[list[str]], right: Collection[int] = ()) -> list[str]:
    """A markdown table's lines: the header, its rule (the columns numbered in `right` aligned right),
    then the rows."""
    rule = ["---:" if column in right else "---" for column in range(len(header))]
    return [_row(header), _row(rule), *(_row(row) for row in rows)]


def save_png(figure: Any, path: Path) -> None:
    """Render a matplotlib figure to a temporary file beside `path` and rename it, so a reader never
    sees half a PNG."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        figure.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_random_run(config, labels: list, folder: Path, seed: int) -> Path:
    """A run folder as `lsllm train` leaves it, with a random head and LoRA weights: enough to time
    prediction or serving, whose speed does not depend on the weights."""
    import torch

    from lsllm.artifacts import RunFolder
    from lsllm.data.labels import LabelMap
    from lsllm.modeling.backbone import load_tokenizer, resolve_model
    from lsllm.modeling.lora import add_lora
    from lsllm.modeling.model import build_model

    label_map = LabelMap.from_names(labels)
    torch.manual_seed(seed)
    model = add_lora(
        build_model(config, len(label_map)), config.lora_r, config.lora_alpha, config.lora_dropout, None
    )
    run = RunFolder(folder)
    run.prepare_for_training(resume=False)
    run.save_setup(config, label_map, load_tokenizer(resolve_model(config.model)))
    run.save_weights(model.save_pretrained)
    return folder
