"""The memory planner against measured peaks: `lsllm train`'s own estimate (lsllm.modeling.memory) next
to the peak resident memory of the training process, for a few settings on a CPU.

    python -m bench.memory                  # SmolLM2-135M and a tiny model, results in bench/results/memory/

Each setting trains one step (one batch of examples as long as the batch's length, so that no example is
shorter than the estimate assumes) and scores the run, in a process of its own; its peak is the
process's whole life: importing, loading, the step, the dev evaluation and the final scoring. Each runs
twice: with glibc's allocator as it comes, which keeps most memory that tensors free (up to 32 MB a block)
for reuse rather than give it back, and with MALLOC_MMAP_THRESHOLD_=131072, which gives every block of
128 KiB or more back when freed, so that the peak is what the tensors needed at once: what the planner
estimates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.common import (
    DASH,
    ROOT,
    SMOLLM2,
    command_line,
    environment,
    fresh_dir,
    markdown_table,
    model_parser,
    number,
    peak_rss_mb,
    timed,
)
from lsllm.atomic import write_json_atomic, write_text_atomic

TEXT = "the film was good and the acting was great but the plot was bad and the ending was awful"
WORDS = TEXT.split(" ")
TINY = "tiny"  # a 2-layer random Llama (tests/tiny.py): what the process itself takes


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    batch_size: int
    length: int
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    lora_dropout: float = 0.1


CASES = [
    Case("tiny fp32 b8 x 128", TINY, 8, 128),
    Case("fp32 b8 x 128", SMOLLM2, 8, 128),
    Case("fp32 b8 x 128, no dropout", SMOLLM2, 8, 128, lora_dropout=0.0),
    Case("fp32 b16 x 128", SMOLLM2, 16, 128),
    Case("fp32 b16 x 128, checkpointing", SMOLLM2, 16, 128, gradient_checkpointing=True),
    Case("bf16 b16 x 128", SMOLLM2, 16, 128, precision="bf16"),
]
# glibc's allocator as it comes, and told to give back every freed block of 128 KiB or more.
ALLOCATORS = {"glibc": {}, "glibc, mmap threshold 128 KiB": {"MALLOC_MMAP_THRESHOLD_": "131072"}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = model_parser("memory", __doc__)
    parser.add_argument("--cases", nargs="+", help="names of the settings to run (default: all)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def write_rows(path: Path, count: int, length: int) -> None:
    """Texts of at least `length` words, so each is cut to `length` tokens."""
    rows = [
        {"text": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(length)), "label": ["neg", "pos"][i % 2]}
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def model_folder(case: Case, work: Path) -> str:
    if case.model != TINY:
        return case.model
    sys.path.insert(0, str(ROOT))
    from tests.tiny import build_tiny_model

    folder = work / "tiny-model"
    if not folder.exists():
        build_tiny_model("llama", folder)
    return str(folder)


def measure(case: Case, work: Path) -> dict:
    """Train `case` for one step in this process; the planner's estimate and the measured peak."""
    import lsllm
    from lsllm.modeling.backbone import resolve_model
    from lsllm.modeling.memory import GiB, ModelShape, Setup, estimate

    folder = work / "case"
    fresh_dir(folder)
    write_rows(folder / "train.jsonl", case.batch_size, case.length)
    write_rows(folder / "dev.jsonl", 2, case.length)
    config = lsllm.TrainConfig(
        model=model_folder(case, work),
        task="sequence",
        train=str(folder / "train.jsonl"),
        dev=str(folder / "dev.jsonl"),
        output=str(folder / "run"),
        batch_size=case.batch_size,
        max_length=case.length,
        precision=case.precision,
        gradient_checkpointing=case.gradient_checkpointing,
        lora_dropout=case.lora_dropout,
        epochs=1.0,
    )
    _, seconds = timed(lambda: lsllm.train(config))
    setup = Setup.for_run(config, case.precision, case.length, num_labels=2)
    planned = estimate(ModelShape.from_pretrained(resolve_model(config.model)), setup)
    parts = {**asdict(planned), "total": planned.total}
    return {
        "case": asdict(case),
        "estimate_gib": {key: value / GiB for key, value in parts.items()},
        "peak_rss_gib": peak_rss_mb() / 1024,
        "seconds": seconds,
        "load_average": os.getloadavg(),
    }


def render(records: list[dict], meta: dict) -> str:
    rows = []
    for name in dict.fromkeys(record["case"]["name"] for record in records):
        runs = {r["allocator"]: r for r in records if r["case"]["name"] == name}
        estimate = next(iter(runs.values()))["estimate_gib"]
        peaks = [runs[allocator]["peak_rss_gib"] if allocator in runs else None for allocator in ALLOCATORS]
        rows.append(
            [
                name.replace("tiny", "tiny Llama,") if name.startswith("tiny") else name,
                number(estimate["weights"], 2),
                number(estimate["activations"], 2),
                number(estimate["total"], 2),
                *(number(peak, 2) for peak in peaks),
                *(DASH if peak is None else f"{estimate['total'] / peak:.2f}" for peak in peaks),
            ]
        )
    hardware = meta["environment"]["hardware"]
    loads = [record["load_average"][0] for record in records]
    return "\n".join(
        [
            "# Memory: the planner's estimate against the measured peak",
            "",
            f"CPU: {hardware['cpu']}, {hardware['cores']} cores; model {SMOLLM2} unless said."
            " One training step on a batch of examples all as long as the batch's length (the planner's"
            " worst case), then the dev evaluation and the final scoring; the peak is the training"
            " process's peak resident memory (ru_maxrss) over all of it. Estimates in GiB, as"
            " `lsllm train` logs them and `lsllm plan` prints them.",
            "",
            *markdown_table(
                [
                    "setting",
                    "weights",
                    "activations",
                    "estimate",
                    "peak, glibc",
                    "peak, mmap threshold 128 KiB",
                    "estimate / peak, glibc",
                    "estimate / peak, threshold",
                ],
                rows,
                right=range(1, 8),
            ),
            "",
            "glibc: its allocator as it comes. mmap threshold 128 KiB: run with"
            " MALLOC_MMAP_THRESHOLD_=131072, so that every freed block of 128 KiB or more goes back to the"
            " system (see the docstring of bench/memory.py). Other jobs shared the machine (1-minute load"
            f" average {min(loads):.1f} to {max(loads):.1f} while it ran); memory does not depend on that,"
            " time does.",
            "",
            f"Command: `{meta['command']}`",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    if args.one:
        case = next(c for c in CASES if c.name == args.one)
        write_json_atomic(work / "record.json", measure(case, work))
        return
    chosen = [c for c in CASES if not args.cases or c.name in args.cases]
    records = []
    for case in chosen:
        for allocator, settings in ALLOCATORS.items():
            print(f"{case.name} ({allocator}) ...", end=" ", flush=True)
            with tempfile.TemporaryFile() as log:
                child = subprocess.run(
                    [sys.executable, "-m", "bench.memory", "--work", str(work), "--one", case.name],
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **settings},
                )
                if child.returncode != 0:
                    log.seek(0)
                    raise SystemExit(f"bench.memory: {case.name} failed:\n{log.read().decode()[-3000:]}")
            record = {
                **json.loads((work / "record.json").read_text(encoding="utf-8")),
                "allocator": allocator,
            }
            print(
                f"estimate {record['estimate_gib']['total']:.2f} GiB, peak {record['peak_rss_gib']:.2f} GiB"
            )
            records.append(record)
    meta = {"command": command_line("bench.memory", argv), "environment": environment()}
    args.results.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.results / "results.json", {"meta": meta, "records": records})
    write_text_atomic(args.results / "table.md", render(records, meta) + "\n")
    print(f"wrote {args.results / 'table.md'}")


if __name__ == "__main__":
    main()
