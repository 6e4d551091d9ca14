"""Load test for `lsllm serve`: requests/s, inputs/s and latency, with micro-batching on and off.

    python -m bench.serve_load                                   # SmolLM2-135M, about 5 minutes
    python -m bench.serve_load --model tiny/model --duration 3   # smoke test on any model folder

Each mode starts its own `lsllm serve` process; N client threads in this process send one-sentence
requests back to back (keep-alive) for a fixed time at each concurrency level. The run folder has a
random head (no training): speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from bench.common import (
    DATA,
    RESULTS,
    SCRATCH,
    SMOLLM2,
    argument_parser,
    command_line,
    environment,
    markdown_table,
    number,
    percentile,
    save_random_run,
)
from lsllm.atomic import write_json_atomic, write_text_atomic
from lsllm.serving.options import ServeOptions

LABELS = {"sequence": ["negative", "positive"], "token": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]}
CLIENTS_NOTE = "- Clients run as threads of the benchmark process, on the same machine as the server."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argument_parser("bench.serve_load", __doc__)
    parser.add_argument("--model", default=SMOLLM2, help="built-in name or model folder")
    parser.add_argument("--task", choices=list(LABELS), default="sequence", help="run task")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16], help="client threads")
    parser.add_argument("--inputs-per-request", type=int, default=1, help="sentences in each request")
    parser.add_argument(
        "--max-batch-size", type=int, default=ServeOptions.max_batch_size, help="batched mode's merge limit"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        nargs="+",
        default=[0.0, ServeOptions.max_wait_ms],
        help="one batched mode per value (0: merge only what queues while the model is busy)",
    )
    parser.add_argument("--batch-size", type=int, help="forward-pass batch of the server (default: lsllm's)")
    add_folders(parser)
    return parser.parse_args(argv)


def add_folders(parser: argparse.ArgumentParser) -> None:
    """--data (for SST-2 dev sentences), --results and --work: the folders of both serve benchmarks."""
    parser.add_argument("--data", type=Path, default=DATA, help="dataset folder (SST-2 dev)")
    parser.add_argument("--results", type=Path, default=RESULTS / "serve", help="output")
    parser.add_argument("--work", type=Path, default=SCRATCH, help="scratch space")


def make_run(model: str, task: str, folder: Path) -> Path:
    """A run folder as `lsllm train` leaves it, with a random head and LoRA weights; reused if complete."""
    from lsllm.artifacts import RunFolder
    from lsllm.config import TrainConfig

    run = RunFolder(folder)
    config = TrainConfig(model=model, task=task, max_length=128)
    if folder.exists():
        if (folder / "config.yaml").exists() and TrainConfig.from_yaml(folder / "config.yaml") == config:
            try:
                run.check()
                return folder
            except Exception:
                pass
        shutil.rmtree(folder)
    return save_random_run(config, LABELS[task], folder, seed=0)


def sentences(data: Path) -> tuple[list[str], str]:
    """SST-2 dev sentences if the dataset folder has them, else generated ones of similar length."""
    path = data / "sst2" / "dev.tsv"
    if path.exists():
        lines = path.read_text(encoding="utf-8").splitlines()[1:]
        texts = [line.split("\t")[0].strip() for line in lines if line.strip()]
        return texts, f"SST-2 dev ({len(texts)} sentences)"
    rng = random.Random(0)
    words = [
        "the",
        "a",
        "film",
        "plot",
        "acting",
        "was",
        "good",
        "bad",
        "dull",
        "and",
        "but",
        "very",
        "funny",
    ]
    return [" ".join(rng.choices(words, k=rng.randint(4, 30))) for _ in range(500)], "generated"


@contextmanager
def server(run: Path, options: list[str], log: Path):
    """`lsllm serve` in its own process on a free port; yields its URL; stops it with SIGTERM."""
    with server_process(run, options, log) as (url, _):
        yield url


@contextmanager
def server_process(run: Path, options: list[str], log: Path):
    """As `server`, yielding (URL, the process); raises RuntimeError if it does not exit with status 0."""
    command = [sys.executable, "-m", "lsllm.cli", "serve", str(run), "--port", "0", *options]
    with log.open("w") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            ready, _, _ = select.select([process.stdout], [], [], 600)
            line = process.stdout.readline() if ready else ""
            found = re.search(r"at (http://\S+) \(API docs", line)
            if not found:
                raise RuntimeError(f"lsllm serve did not start; see {log}")
            yield found.group(1), process
            process.send_signal(signal.SIGTERM)
            if process.wait(120) != 0:
                raise RuntimeError(f"lsllm serve exited with status {process.returncode}; see {log}")
        finally:
            if process.poll() is None:
                process.kill()


def request(connection: http.client.HTTPConnection, method: str, path: str, body=None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    connection.request(method, path, body=data, headers={"content-type": "application/json"})
    response = connection.getresponse()
    payload = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {payload}")
    return payload


def connect(url: str) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=600)


def batching_counters(url: str) -> dict:
    """The server's batching counters, on a fresh connection (an idle one is closed after 5 s)."""
    connection = connect(url)
    try:
        return request(connection, "GET", "/health")["batching"]
    finally:
        connection.close()


def measure(url: str, texts: list[str], clients: int, duration: float, per_request: int) -> dict:
    """`clients` threads sending requests back to back for `duration` seconds."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    start = threading.Barrier(clients + 1)
    stop_at = 0.0

    def client(index: int) -> None:
        connection = connect(url)
        position = index * 97
        start.wait()
        try:
            while time.perf_counter() < stop_at:
                inputs = [texts[(position + i) % len(texts)] for i in range(per_request)]
                position += per_request
                began = time.perf_counter()
                rows = request(connection, "POST", "/predict", {"inputs": inputs})["predictions"]
                latencies[index].append(time.perf_counter() - began)
                assert len(rows) == per_request
        except Exception as error:  # reported, and the level is marked as failed
            failures.append(repr(error))
        finally:
            connection.close()

    before = batching_counters(url)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at = began + duration
    start.wait()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    after = batching_counters(url)
    done = [latency for per_client in latencies for latency in per_client]
    batches = after["batches"] - before["batches"]
    requests = after["requests"] - before["requests"]
    return {
        "clients": clients,
        "requests": len(done),
        "inputs": len(done) * per_request,
        "seconds": round(seconds, 3),
        "requests_per_s": len(done) / seconds,
        "inputs_per_s": len(done) * per_request / seconds,
        "p50_ms": 1000 * percentile(done, 0.50) if done else None,
        "p99_ms": 1000 * percentile(done, 0.99) if done else None,
        "requests_per_batch": requests / batches if batches else None,
        "failures": failures,
    }


def _number(value: float | None, digits: int = 1) -> str:
    return number(value, digits, missing="-")


def render(record: dict) -> str:
    settings = record["settings"]
    lines = [
        "# `lsllm serve` under load",
        "",
        f"{settings['model']} ({settings['task']} run, random head), {settings['inputs_per_request']}"
        f" sentence(s) per request from {record['sentences']}, {settings['duration']:g} s per level."
        " Unbatched is --max-batch-size 1: every request its own prediction call.",
        "",
    ]
    header = ["mode", "clients", "requests/s", "inputs/s", "p50 ms", "p99 ms", "requests per batch"]
    header.append("failures")
    rows = [
        [
            mode["name"],
            str(level["clients"]),
            _number(level["requests_per_s"]),
            _number(level["inputs_per_s"]),
            _number(level["p50_ms"], 0),
            _number(level["p99_ms"], 0),
            _number(level["requests_per_batch"], 2),
            str(len(level["failures"])),
        ]
        for mode in record["modes"]
        for level in mode["levels"]
    ]
    lines += markdown_table(header, rows, right=range(2, len(header)))
    unbatched = {level["clients"]: level for level in record["modes"][-1]["levels"]}
    lines += ["", "Throughput against unbatched:", ""]
    for mode in record["modes"][:-1]:
        ratios = [
            f"{level['clients']} clients {level['requests_per_s'] / base['requests_per_s']:.2f}x"
            for level in mode["levels"]
            if (base := unbatched.get(level["clients"])) and base["requests_per_s"]
        ]
        lines.append(f"- {mode['name']}: {', '.join(ratios)}")
    env = record["environment"]
    lines += [
        "",
        f"- Command: `{record['command']}`",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in env['versions'].items())}",
        f"- Hardware: {', '.join(f'{k}: {v}' for k, v in env['hardware'].items())}",
        CLIENTS_NOTE,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = command_line("bench.serve_load", argv)
    name = re.sub(r"\W+", "-", args.model).strip("-")
    run = make_run(args.model, args.task, args.work / f"serve-run-{name}-{args.task}")
    texts, source = sentences(args.data)
    modes = [
        {"name": f"batched, wait {wait:g} ms", "max_batch_size": args.max_batch_size, "max_wait_ms": wait}
        for wait in args.max_wait_ms
    ]
    modes.append({"name": "unbatched", "max_batch_size": 1, "max_wait_ms": 0.0})
    forward = ["--batch-size", str(args.batch_size)] if args.batch_size else []
    for index, mode in enumerate(modes):
        options = ["--max-batch-size", str(mode["max_batch_size"]), "--max-wait-ms", str(mode["max_wait_ms"])]
        with server(run, [*options, *forward], args.work / f"serve-{index}.log") as url:
            warm = connect(url)
            for text in texts[:8]:
                request(warm, "POST", "/predict", {"inputs": [text]})
            warm.close()
            mode["levels"] = []
            for clients in args.concurrency:
                level = measure(url, texts, clients, args.duration, args.inputs_per_request)
                mode["levels"].append(level)
                print(
                    f"{mode['name']:20} {clients:3} clients: {level['requests_per_s']:7.1f} requests/s,"
                    f" p50 {_number(level['p50_ms'], 0)} ms, p99 {_number(level['p99_ms'], 0)} ms",
                    flush=True,
                )
    env = environment()
    env["versions"].update({package: metadata.version(package) for package in ("fastapi", "uvicorn")})
    record = {
        "settings": {
            "model": args.model,
            "task": args.task,
            "duration": args.duration,
            "inputs_per_request": args.inputs_per_request,
            "batch_size": args.batch_size,
        },
        "sentences": source,
        "command": command,
        "environment": env,
        "modes": modes,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.results / "results.json", record)
    write_text_atomic(args.results / "table.md", render(record))
    print(f"written {args.results / 'table.md'} and results.json")


if __name__ == "__main__":
    main()
