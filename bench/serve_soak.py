"""Soak test of `lsllm serve` under faults: valid requests mixed with malformed, oversize, misshapen,
stalled and abandoned ones from concurrent clients, for a fixed time, on loopback.

    python -m bench.serve_soak --model smollm2-135m --seconds 180 --clients 16   # the committed result
    python -m bench.serve_soak --model runs/sentiment                            # a run or an export
    python -m bench.serve_soak --tiny --seconds 20 --results /tmp/soak           # anywhere, in a minute

The server is `lsllm serve` in its own process on a free loopback port, in fp32 (so answers do not
depend on how requests were merged into batches); each client thread picks a kind of request at random
(seeded) again and again until time is up. Passes (exit status 0) only if the server is still alive and
answers /health, every valid request got status 200 and the rows `predict` gives for its inputs
(computed beforehand in this process, floats within --tolerance), every fault got its status (400,
413, 422, 408 within --request-timeout-s plus 5 s), and the server's memory stopped growing (see
`rss_bounded`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import random
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from importlib import metadata
from pathlib import Path

from bench.common import ROOT, argument_parser, command_line, environment, markdown_table, percentile
from bench.serve_load import CLIENTS_NOTE, add_folders, make_run, sentences, server_process
from lsllm.atomic import write_json_atomic, write_text_atomic
from lsllm.serving.options import ServeOptions

# Kind of request -> its share of the requests; the answers each kind may get (anything else fails).
KINDS = {
    "valid": 0.40,  # 1-4 known sentences, a quarter of them with top_k=2: status 200 and predict's rows
    "malformed_json": 0.08,  # not JSON: 400
    "oversize": 0.06,  # a body over --max-body-bytes, with a Content-Length or chunked: 413
    "wrong_shape": 0.10,  # JSON of the wrong shape or over the limits, or no body: 422
    "stall_body": 0.08,  # headers and half the body, then nothing: 408 after --request-timeout-s
    "stall_headers": 0.04,  # half the headers, then nothing: 408 after --request-timeout-s
    "disconnect_mid_body": 0.12,  # headers and half the body, then the client hangs up
    "disconnect_waiting": 0.12,  # the whole request, then the client hangs up before the answer
}
EXPECTED = {
    "valid": {"200"},
    "malformed_json": {"400"},
    # the server answers 413 from the Content-Length and closes the connection: a client still writing
    # its body may see the close (reset) before it reads the answer, as with any HTTP server
    "oversize": {"413", "reset while sending"},
    "wrong_shape": {"422"},
    "stall_body": {"408"},
    "stall_headers": {"408"},
    "disconnect_mid_body": {"hung up"},
    "disconnect_waiting": {"hung up"},
}
MALFORMED = [
    b'{"inputs": ["a gorgeous film"',
    b"inputs=a+gorgeous+film",
    b'{"inputs": ["a film"]}}',
    b'{"inputs": ["a \xff film"]}',
    b"{'inputs': ['a film']}",
]
WRONG_SHAPES = [
    {"inputs": {"text": "a film"}},
    {"inputs": [1, 2]},
    {"inputs": [["a film", "a plot"]]},
    {"text": "a film"},
    {"inputs": ["a film"], "top_k": 0},
    {"inputs": []},
    {"inputs": ["a film"], "temperature": 0.5},
    {"inputs": ["a film"] * (ServeOptions.max_inputs + 1)},
    {"inputs": ["x" * (ServeOptions.max_chars + 1)]},
    {"inputs": ["   "]},
    None,  # no body at all: FastAPI's "Field required" at ["body"]
]
# RSS check: the server's memory "grew without bound" if, from the first sample after warm-up to the
# last, it grew by more than RSS_GROWTH_MIB *and* was still growing over the second half of the soak by
# more than RSS_SLOPE_MIB_PER_MIN (least-squares line through that half's samples). A plateau passes;
# a leak of ~4 KiB or more per request at this load fails.
RSS_GROWTH_MIB = 64.0
RSS_SLOPE_MIB_PER_MIN = 8.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argument_parser("bench.serve_soak", __doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        help="a run folder or an export to serve; or a base model (built-in name or model folder), for"
        " which a sequence run with a random head is built under --work, as bench.serve_load does",
    )
    source.add_argument("--tiny", action="store_true", help="a tiny random model built in a temporary folder")
    parser.add_argument("--seconds", type=float, default=180.0, help="how long the clients run")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clients' choices")
    parser.add_argument(
        "--request-timeout-s",
        type=float,
        default=2.0,
        help="the server's --request-timeout-s: how long stalled clients hold on (the default 10 s would"
        " make stalls most of the soak's time)",
    )
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest difference of a float")
    add_folders(parser)
    return parser.parse_args(argv)


# --- the machine and the server process ---------------------------------------------------------------


def cpu_flags() -> dict[str, bool]:
    """The CPU features that decide which kernels torch runs, from /proc/cpuinfo (Linux)."""
    path = Path("/proc/cpuinfo")
    text = path.read_text() if path.exists() else ""
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    return {name: name in flags for name in ("avx2", "avx512f", "avx512_bf16", "amx_tile")}


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process in MiB: psutil if installed, else VmRSS from /proc; None once gone."""
    try:
        import psutil
    except ImportError:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return None


def open_files(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Sampler(threading.Thread):
    """The server's RSS and open file descriptors, every `every` seconds until stopped."""

    def __init__(self, pid: int, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[dict] = []
        self.began = time.monotonic()
        self.halt = threading.Event()

    def run(self) -> None:
        while True:
            rss = rss_mib(self.pid)
            if rss is not None:
                self.samples.append(
                    {
                        "t": round(time.monotonic() - self.began, 2),
                        "rss_mib": rss,
                        "fds": open_files(self.pid),
                    }
                )
            if self.halt.wait(self.every):
                return


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return None
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def memory_summary(samples: list[dict], soak_began: float, soak_ended: float) -> dict:
    """RSS at the start of the soak, its peak, at the end, and its slope over the soak's second half."""
    during = [s for s in samples if soak_began <= s["t"] <= soak_ended + 1.5] or samples
    if not during:
        return {"rss_bounded": False, "reason": "no samples"}
    middle = (soak_began + soak_ended) / 2
    slope = slope_per_minute([(s["t"], s["rss_mib"]) for s in during if s["t"] >= middle])
    start, end = during[0]["rss_mib"], during[-1]["rss_mib"]
    growth = end - start
    fds = [s["fds"] for s in during if s["fds"] is not None]
    return {
        "rss_start_mib": round(start, 1),
        "rss_peak_mib": round(max(s["rss_mib"] for s in during), 1),
        "rss_end_mib": round(end, 1),
        "rss_growth_mib": round(growth, 1),
        "rss_slope_second_half_mib_per_min": None if slope is None else round(slope, 2),
        "rss_bounded": not (growth > RSS_GROWTH_MIB and (slope or 0) > RSS_SLOPE_MIB_PER_MIN),
        "criterion": f"fails if RSS grew by more than {RSS_GROWTH_MIB:g} MiB from start to end and its"
        f" second-half slope is over {RSS_SLOPE_MIB_PER_MIN:g} MiB/min",
        "fds_start": fds[0] if fds else None,
        "fds_peak": max(fds) if fds else None,
        "fds_end": fds[-1] if fds else None,
    }


# --- one request of each kind ---------------------------------------------------------------------------


class Client:
    """One raw HTTP/1.1 exchange per request, on a fresh connection (so faults cannot leak between kinds)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host.strip("[]"), int(port)
        self.timeout_s = timeout_s

    def connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    @staticmethod
    def head(length: int | None) -> bytes:
        framing = "transfer-encoding: chunked" if length is None else f"content-length: {length}"
        head = f"POST /predict HTTP/1.1\r\nhost: soak\r\ncontent-type: application/json\r\n{framing}\r\n\r\n"
        return head.encode()

    @staticmethod
    def answer(sock: socket.socket) -> tuple[int, dict | str]:
        response = http.client.HTTPResponse(sock)
        response.begin()
        data = response.read()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data.decode(errors="replace")

    def post(self, data: bytes) -> tuple[int, dict | str]:
        with self.connect() as sock:
            sock.sendall(self.head(len(data)) + data)
            return self.answer(sock)

    def oversize(self, size: int, chunked: bool) -> tuple[str, dict | str]:
        body = b'{"inputs": ["' + b"a" * size + b'"]}'
        with self.connect() as sock:
            try:
                if chunked:
                    sock.sendall(self.head(None))
                    for start in range(0, len(body), 65536):
                        piece = body[start : start + 65536]
                        sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    sock.sendall(b"0\r\n\r\n")
                else:
                    sock.sendall(self.head(len(body)) + body)
            except (BrokenPipeError, ConnectionResetError):
                try:  # the answer may still be readable
                    status, detail = self.answer(sock)
                    return str(status), detail
                except (OSError, http.client.HTTPException):
                    return "reset while sending", ""
            status, detail = self.answer(sock)
            return str(status), detail

    def stall(self, data: bytes) -> tuple[str, dict | str]:
        """Send `data` (part of a request), then nothing; wait for the server's answer."""
        with self.connect() as sock:
            sock.sendall(data)
            try:
                status, detail = self.answer(sock)
            except TimeoutError:
                return "no answer", ""
            except (OSError, http.client.HTTPException) as error:
                return f"closed without answer ({type(error).__name__})", ""
            return str(status), detail

    def hang_up(self, data: bytes, after_s: float) -> str:
        with self.connect() as sock:
            sock.sendall(data)
            time.sleep(after_s)
        return "hung up"

    def get(self, path: str) -> tuple[int, dict | str]:
        with self.connect() as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nhost: soak\r\n\r\n".encode())
            return self.answer(sock)


def differences(got, expected, tolerance: float, path: str = "") -> list[str]:
    """Where two prediction structures differ (floats by more than `tolerance`)."""
    if isinstance(expected, float) and isinstance(got, (int, float)):
        return [] if math.isclose(got, expected, abs_tol=tolerance) else [f"{path}: {got} != {expected}"]
    if isinstance(expected, dict) and isinstance(got, dict):
        if got.keys() != expected.keys():
            return [f"{path}: keys {sorted(got)} != {sorted(expected)}"]
        return [
            d for key in expected for d in differences(got[key], expected[key], tolerance, f"{path}.{key}")
        ]
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        if len(got) != len(expected):
            return [f"{path}: {len(got)} items != {len(expected)}"]
        return [
            d
            for i, pair in enumerate(zip(got, expected, strict=True))
            for d in differences(*pair, tolerance, f"{path}[{i}]")
        ]
    return [] if got == expected else [f"{path}: {got!r} != {expected!r}"]


def largest_difference(got, expected) -> float:
    if isinstance(expected, float) and isinstance(got, (int, float)):
        return abs(got - expected)
    if isinstance(expected, dict) and isinstance(got, dict):
        return max((largest_difference(got.get(k), v) for k, v in expected.items()), default=0.0)
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        return max((largest_difference(a, b) for a, b in zip(got, expected, strict=False)), default=0.0)
    return 0.0


class Soak:
    """The clients, their choices and what they saw."""

    def __init__(self, url: str, texts: list[str], expected: dict, args: argparse.Namespace) -> None:
        self.client = Client(url, timeout_s=args.request_timeout_s + 30)
        self.texts, self.expected, self.args = texts, expected, args
        self.lock = threading.Lock()
        self.outcomes: Counter = Counter()  # (kind, outcome)
        self.statuses: Counter = Counter()  # status codes the server answered
        self.latencies: list[float] = []  # valid requests, seconds
        self.stall_waits: list[float] = []  # stalled requests, seconds until the 408
        self.unexpected: list[dict] = []  # the first few of each kind
        self.mismatches: list[dict] = []
        self.max_difference = 0.0
        self.sent_to_model = 0  # requests sent whole with valid inputs: valid and disconnect_waiting

    def note(self, kind: str, outcome: str, detail=None) -> None:
        with self.lock:
            self.outcomes[kind, outcome] += 1
            if outcome.isdigit():
                self.statuses[outcome] += 1
            if outcome not in EXPECTED[kind] and sum(u["kind"] == kind for u in self.unexpected) < 5:
                self.unexpected.append({"kind": kind, "outcome": outcome, "detail": str(detail)[:300]})

    def valid_body(self, rng: random.Random) -> tuple[bytes, list[int], int | None]:
        picks = [rng.randrange(len(self.texts)) for _ in range(rng.randint(1, 4))]
        top_k = 2 if rng.random() < 0.25 else None
        body = {"inputs": [self.texts[i] for i in picks]} | ({"top_k": top_k} if top_k else {})
        return json.dumps(body).encode(), picks, top_k

    def one(self, kind: str, rng: random.Random) -> None:
        timeout = self.args.request_timeout_s
        if kind == "valid":
            data, picks, top_k = self.valid_body(rng)
            with self.lock:
                self.sent_to_model += 1
            began = time.perf_counter()
            status, body = self.client.post(data)
            seconds = time.perf_counter() - began
            if status != 200:
                return self.note(kind, str(status), body)
            expected = [self.expected[top_k][i] for i in picks]
            problems = differences(body.get("predictions"), expected, self.args.tolerance, "predictions")
            with self.lock:
                self.latencies.append(seconds)
                self.max_difference = max(
                    self.max_difference, largest_difference(body["predictions"], expected)
                )
                if problems and len(self.mismatches) < 20:
                    self.mismatches.append({"inputs": picks, "top_k": top_k, "differences": problems[:5]})
                elif problems:
                    self.mismatches.append({"inputs": picks, "top_k": top_k})
            return self.note(kind, "200" if not problems else "200 mismatch", problems[:3])
        if kind == "malformed_json":
            status, body = self.client.post(rng.choice(MALFORMED))
            return self.note(kind, str(status), body)
        if kind == "oversize":
            outcome, body = self.client.oversize(ServeOptions.max_body_bytes, chunked=rng.random() < 0.5)
            return self.note(kind, outcome, body)
        if kind == "wrong_shape":
            shape = rng.choice(WRONG_SHAPES)
            status, body = self.client.post(b"" if shape is None else json.dumps(shape).encode())
            return self.note(kind, str(status), body)
        if kind in ("stall_body", "stall_headers"):
            data = self.valid_body(rng)[0]
            head = self.client.head(len(data))
            part = head + data[: len(data) // 2] if kind == "stall_body" else head[: len(head) // 2]
            began = time.perf_counter()
            outcome, body = self.client.stall(part)
            waited = time.perf_counter() - began
            if outcome == "408" and not 0.9 * timeout <= waited <= timeout + 5:
                outcome = f"408 after {waited:.1f} s"
            if outcome == "408":
                with self.lock:
                    self.stall_waits.append(waited)
            return self.note(kind, outcome, body)
        data = self.valid_body(rng)[0]
        if kind == "disconnect_mid_body":
            cut = rng.randrange(1, len(data))
            return self.note(
                kind, self.client.hang_up(self.client.head(len(data)) + data[:cut], rng.random() * 0.05)
            )
        with self.lock:
            self.sent_to_model += 1
        return self.note(kind, self.client.hang_up(self.client.head(len(data)) + data, rng.random() * 0.3))

    def run(self, clients: int, seconds: float, seed: int) -> float:
        """`clients` threads for `seconds`; returns the seconds it took (the last requests finish late)."""
        kinds, weights = list(KINDS), list(KINDS.values())
        stop_at = time.monotonic() + seconds

        def worker(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            while time.monotonic() < stop_at:
                kind = rng.choices(kinds, weights)[0]
                try:
                    self.one(kind, rng)
                except Exception as error:  # a failure of the exchange itself: counted as unexpected
                    self.note(kind, f"error {type(error).__name__}", error)

        began = time.monotonic()
        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.monotonic() - began


# --- the record ----------------------------------------------------------------------------------------


def summary_of(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50_ms": round(1000 * percentile(values, 0.50), 1),
        "p90_ms": round(1000 * percentile(values, 0.90), 1),
        "p99_ms": round(1000 * percentile(values, 0.99), 1),
        "max_ms": round(1000 * max(values), 1),
    }


def render(record: dict) -> str:
    memory, server, checks = record["memory"], record["server"], record["checks"]
    valid = record["valid_latency"]
    lines = [
        "# `lsllm serve` under faults",
        "",
        f"**{'PASSED' if record['passed'] else 'FAILED'}**: {record['model']['description']}, fp32,"
        f" {record['settings']['clients']} client threads for {record['settings']['seconds']:g} s, server"
        f" --request-timeout-s {record['settings']['request_timeout_s']:g}.",
        "",
    ]
    kinds = [
        [kind, str(sum(outcomes.values())), ", ".join(f"{o}: {n}" for o, n in sorted(outcomes.items()))]
        for kind, outcomes in record["outcomes"].items()
    ]
    kinds.append(["**all**", str(record["requests"]), f"{record['requests_per_s']:.1f} requests/s"])
    lines += markdown_table(["kind", "requests", "outcomes"], kinds, right={1})
    results = [[name, f"{'pass' if c['pass'] else 'FAIL'}: {c['detail']}"] for name, c in checks.items()]
    lines += ["", *markdown_table(["check", "result"], results)]
    lines += [
        "",
        f"- Valid requests: {valid['count']}, latency p50 {valid.get('p50_ms', '-')} ms, p90"
        f" {valid.get('p90_ms', '-')} ms, p99 {valid.get('p99_ms', '-')} ms, max {valid.get('max_ms', '-')}"
        f" ms; largest difference from `predict` {record['max_difference']:.2e}.",
        f"- Stalled clients got their 408 after {record['stall_wait']}",
        f"- Server RSS: {memory['rss_start_mib']} MiB at the start, peak {memory['rss_peak_mib']}, end"
        f" {memory['rss_end_mib']} MiB; second-half slope {memory['rss_slope_second_half_mib_per_min']}"
        f" MiB/min. Open file descriptors: {memory['fds_start']} at the start, peak {memory['fds_peak']},"
        f" end {memory['fds_end']}.",
        f"- Server counters (/health): {json.dumps(server['health_batching'])}; exit status after SIGTERM:"
        f" {server['exit_status']}.",
        f"- Status codes answered: {json.dumps(record['statuses'])}.",
        f"- Command: `{record['command']}`",
        f"- Machine: {record['machine']['cpu']}, {record['machine']['cores']} cores, flags"
        f" {', '.join(k for k, v in record['machine']['flags'].items() if v) or 'none of those checked'};"
        f" {', '.join(f'{k} {v}' for k, v in record['versions'].items())}.",
        CLIENTS_NOTE,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("bench.serve_soak", argv)
    args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lsllm-soak-") as scratch:
        if args.tiny:
            sys.path.insert(0, str(ROOT))
            from tests.tiny import build_tiny_model

            base = build_tiny_model("llama", Path(scratch) / "tiny-model")
            run, description = make_run(str(base), "sequence", Path(scratch) / "run"), "tiny random llama"
        elif (Path(args.model) / "config.yaml").exists():
            run, description = Path(args.model), f"{args.model} (as given)"
        else:
            name = "".join(c if c.isalnum() else "-" for c in args.model).strip("-")
            run = make_run(args.model, "sequence", args.work / f"serve-run-{name}-sequence")
            description = f"{args.model} (sequence run, random head)"
        return soak(args, run, description, command, Path(scratch))


def soak(args: argparse.Namespace, run: Path, description: str, command: str, scratch: Path) -> int:
    import gc

    import lsllm

    texts, source = sentences(args.data)
    texts = random.Random(args.seed).sample(texts, min(64, len(texts)))
    reference = lsllm.load(run, precision="fp32")
    expected = {None: reference.predict(texts), 2: reference.predict(texts, top_k=2)}
    labels = reference.labels
    del reference
    gc.collect()
    print(f"expected rows computed for {len(texts)} sentences ({source}); starting the server", flush=True)

    options = ["--precision", "fp32", "--request-timeout-s", str(args.request_timeout_s)]
    log = scratch / "server.log"
    record: dict = {}
    exit_status: int | str = "not stopped"
    try:
        with server_process(run, options, log) as (url, process):
            sampler = Sampler(process.pid)
            sampler.start()
            clients = Soak(url, texts, expected, args)
            for i in range(8):  # warm up, so the first samples are not the model's first batches
                clients.client.post(json.dumps({"inputs": texts[i : i + 2]}).encode())
            before = clients.client.get("/health")[1]["batching"]
            soak_began = time.monotonic() - sampler.began
            print(f"soak: {args.clients} clients for {args.seconds:g} s against {url}", flush=True)
            took = clients.run(args.clients, args.seconds, args.seed)
            soak_ended = time.monotonic() - sampler.began
            time.sleep(1.5)  # one more sample, and the last abandoned requests settle
            alive = process.poll() is None
            try:
                status, health = clients.client.get("/health")
                health_ok = status == 200 and health.get("status") == "ok" and health.get("model_loaded")
                after = health["batching"]
            except Exception as error:
                health_ok, after = False, {"error": repr(error)}
            sampler.halt.set()
            sampler.join()
            record = {"alive": alive, "health_ok": bool(health_ok), "before": before, "after": after}
        exit_status = 0
    except RuntimeError as error:  # it did not start, or did not exit with status 0
        exit_status = str(error)
        if not record:
            print(f"error: {error}\n{log.read_text()[-3000:]}", file=sys.stderr)
            return 2
    server_log = log.read_text()[-2000:]

    counts = {kind: {o: n for (k, o), n in sorted(clients.outcomes.items()) if k == kind} for kind in KINDS}
    requests = sum(clients.outcomes.values())
    memory = memory_summary(sampler.samples, soak_began, soak_ended)
    after, before = record["after"], record["before"]
    unexpected = sum(n for (kind, outcome), n in clients.outcomes.items() if outcome not in EXPECTED[kind])
    mismatches = clients.outcomes["valid", "200 mismatch"]
    reached = after.get("requests", 0) - before["requests"] if "requests" in after else None
    abandoned = after.get("abandoned", 0) - before.get("abandoned", 0)
    dropped = after.get("dropped", 0) - before.get("dropped", 0)
    checks = {
        "server alive and /health ok": {
            "pass": record["alive"] and record["health_ok"],
            "detail": f"alive {record['alive']}, /health ok {record['health_ok']}",
        },
        "valid answers equal predict's": {
            "pass": mismatches == 0 and clients.outcomes["valid", "200"] > 0,
            "detail": f"{clients.outcomes['valid', '200']} equal, {mismatches} mismatched",
        },
        "every request got its expected outcome": {
            "pass": unexpected == 0,
            "detail": f"{unexpected} unexpected"
            + (
                f" (first: {clients.unexpected[0]['kind']} {clients.unexpected[0]['outcome']})"
                if unexpected
                else ""
            ),
        },
        "nothing left queued": {
            "pass": after.get("queued") == 0,
            "detail": f"queued {after.get('queued')}; {abandoned} abandoned by their clients, {dropped} of"
            f" them dropped unpredicted; {reached} requests reached the batcher of {clients.sent_to_model}"
            " sent whole",
        },
        "memory bounded": {"pass": memory["rss_bounded"], "detail": memory.get("criterion", "")},
        "clean exit on SIGTERM": {"pass": exit_status == 0, "detail": f"exit: {exit_status}"},
    }
    env = environment()
    versions = {k: env["versions"][k] for k in ("python", "torch", "transformers", "lsllm", "commit")}
    versions.update({package: metadata.version(package) for package in ("fastapi", "uvicorn", "h11")})
    record = {
        "passed": all(check["pass"] for check in checks.values()),
        "checks": checks,
        "settings": {
            "seconds": args.seconds,
            "clients": args.clients,
            "seed": args.seed,
            "request_timeout_s": args.request_timeout_s,
            "tolerance": args.tolerance,
            "kinds": KINDS,
            "expected": {kind: sorted(outcomes) for kind, outcomes in EXPECTED.items()},
        },
        "model": {"run": str(run), "description": description, "labels": labels, "sentences": source},
        "requests": requests,
        "seconds": round(took, 1),
        "requests_per_s": requests / took,
        "outcomes": counts,
        "statuses": dict(sorted(clients.statuses.items())),
        "mismatches": clients.mismatches,
        "unexpected": clients.unexpected,
        "max_difference": clients.max_difference,
        "valid_latency": summary_of(clients.latencies),
        "stall_wait": (
            f"{min(waits):.2f}-{max(waits):.2f} s (timeout {args.request_timeout_s:g} s)"
            if (waits := clients.stall_waits)
            else "-"
        ),
        "memory": memory,
        "rss_samples": sampler.samples,
        "server": {
            "alive": record["alive"],
            "health_ok": record["health_ok"],
            "health_batching": after,
            "exit_status": exit_status,
            "log_tail": server_log,
        },
        "command": command,
        "machine": {
            "cpu": env["hardware"]["cpu"] or platform.processor(),
            "cores": env["hardware"]["cores"],
            "torch_threads": env["hardware"]["torch_threads"],
            "flags": cpu_flags(),
        },
        "versions": versions,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.results / "soak.json", record)
    write_text_atomic(args.results / "soak.md", render(record))
    print(render(record))
    print(f"written {args.results / 'soak.md'} and soak.json")
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
