"""Crash safety on the real model: SmolLM2-135M trained once without interruption, then again with a
`kill -9` at random moments, each followed by the same command with --resume. Every resumed run must end
with the uninterrupted run's best checkpoint, dev/test metrics and weights.

    python -m bench.resume                # results in bench/results/resume/
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from bench.common import command_line, environment, markdown_table, model_parser
from bench.datasets import TASKS, prepare
from lsllm.atomic import write_json_atomic, write_text_atomic


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = model_parser("resume", __doc__)
    parser.add_argument("--kills", type=int, default=3, help="killed runs, each at a random moment")
    parser.add_argument("--train-examples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (training uses 42)")
    return parser.parse_args(argv)


def train_command(args: argparse.Namespace, paths: dict, output: Path) -> list[str]:
    return [
        sys.executable, "-m", "lsllm.cli", "train", "--model", args.model, "--task", "sequence",
        "--train", str(paths["train"]), "--dev", str(paths["selection"]), "--test", str(paths["evaluation"]),
        "--output", str(output), "--preset", "quick", "--max-train-examples", str(args.train_examples),
        "--max-dev-examples", "64", "--eval-steps", "4", "--max-length", "64",
    ]  # fmt: skip


def outcome(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    weights = load_file(run / "adapter_model.safetensors")
    return {
        "dev": metrics["dev"]["accuracy"],
        "test": metrics["test"]["accuracy"],
        "best_checkpoint": Path(metrics["best_checkpoint"]).name,
        "weights": {name: tensor.tolist() for name, tensor in weights.items()},
    }


def render(record: dict, seconds: float) -> str:
    """table.md: the uninterrupted run (it took `seconds`) and each killed and resumed one."""
    reference, hardware = record["reference"], record["environment"]["hardware"]
    rows = [
        [
            f"{t['killed_after_s']} s",
            ", ".join(t["checkpoints_left"]) or "none",
            str(len(t["resume_warnings"])),
            "yes" if t["identical"] else "**no**",
        ]
        for t in record["trials"]
    ]
    header = ["killed after", "checkpoints left", "damaged ones skipped", "same best, metrics and weights"]
    lines = [
        "# kill -9 and --resume on SmolLM2-135M",
        "",
        f"CPU: {hardware['cpu']} ({', '.join(hardware['cpu_features'])}), precision auto ="
        f" {hardware['precision_auto']}. Uninterrupted: {seconds:.0f} s, dev accuracy"
        f" {reference['dev']:.3f}, test accuracy {reference['test']:.3f},"
        f" best {reference['best_checkpoint']}.",
        "",
        *markdown_table(header, rows),
        "",
        f"Command: `{record['command']}`; each run: `{record['train_command']}`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    shutil.rmtree(args.work / "runs", ignore_errors=True)
    paths = prepare(TASKS["sst2"], args.data, args.work / "data", seed=0, scale=0.1)
    started = time.perf_counter()
    subprocess.run(
        train_command(args, paths, args.work / "runs" / "reference"), check=True, capture_output=True
    )
    seconds = time.perf_counter() - started
    reference = outcome(args.work / "runs" / "reference")
    print(f"uninterrupted: {seconds:.0f} s, dev {reference['dev']:.3f}, test {reference['test']:.3f}")
    rng, trials = random.Random(args.seed), []
    for number in range(args.kills):
        output = args.work / "runs" / f"killed-{number}"
        moment = rng.uniform(0.15, 0.95) * seconds
        child = subprocess.Popen(
            train_command(args, paths, output), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(moment)
        child.send_signal(signal.SIGKILL)
        child.wait()
        left = (
            sorted(p.name for p in (output / "checkpoints").glob("checkpoint-*")) if output.exists() else []
        )
        resumed = subprocess.run(
            [*train_command(args, paths, output), "--resume"], capture_output=True, text=True
        )
        same = resumed.returncode == 0 and outcome(output) == reference
        warnings = [line for line in resumed.stderr.splitlines() if "skipping" in line]
        trials.append(
            {
                "killed_after_s": round(moment, 1),
                "checkpoints_left": left,
                "resume_warnings": warnings,
                "identical": same,
            }
        )
        print(f"kill {number + 1}: after {moment:.0f} s, left {left}, resumed identical: {same}")
    record = {
        "command": command_line("bench.resume", argv),
        "train_command": shlex.join(train_command(args, paths, Path("RUN"))[1:]),
        "environment": environment(),
        "uninterrupted_seconds": round(seconds, 1),
        "reference": {k: v for k, v in reference.items() if k != "weights"},
        "trials": trials,
    }
    write_json_atomic(args.results / "results.json", record)
    write_text_atomic(args.results / "table.md", render(record, seconds))
    if not all(t["identical"] for t in trials):
        raise SystemExit("bench.resume: a resumed run differs from the uninterrupted one")


if __name__ == "__main__":
    main()
