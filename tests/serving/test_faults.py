"""`lsllm serve` under faults, over real HTTP on loopback: clients that stall, disconnect or send garbage
get their error, leave nothing behind, and never hold up the valid requests around them."""

from __future__ import annotations

import http.client
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

import lsllm
from tests.helpers import saved_run
from tests.serving.client import TEXTS, assert_same, call, predict, running

TIMEOUT = 1.0  # --request-timeout-s of the services here
LIMITS = {"max_body_bytes": 4096, "max_inputs": 8, "max_chars": 200, "request_timeout_s": TIMEOUT}
HEAD = "POST /predict HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n"


def open_socket(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict, bool]:
    """(status, JSON body, whether the server then closed the connection) of the answer on `sock`."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = json.loads(response.read())
    try:
        closed = sock.recv(1) == b""
    except ConnectionResetError:
        closed = True
    return response.status, body, closed


def health(url: str) -> dict:
    status, body = call(url, "GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["model_loaded"] is True
    return body["batching"]


@pytest.fixture(scope="module")
def classifier(tiny_model, tmp_path_factory):
    """fp32: in bf16 (the default where the CPU has it) another batch composition moves scores by ~1e-4."""
    run = saved_run(tiny_model, tmp_path_factory.mktemp("faults") / "seq", "sequence", "causal")
    return lsllm.load(run, precision="fp32")


@pytest.fixture(scope="module")
def service(classifier):
    with running(classifier, max_wait_ms=5, **LIMITS) as url:
        yield url


def test_a_stalled_half_body_gets_408_within_the_timeout_while_others_are_served(service, classifier):
    stalled = open_socket(service)
    stalled.sendall(HEAD.format(1000).encode() + b'{"inputs":')  # 10 of the 1,000 bytes announced
    began = time.monotonic()
    status, body = predict(service, {"inputs": TEXTS})  # served meanwhile, at once
    assert status == 200 and time.monotonic() - began < TIMEOUT
    assert_same(body["predictions"], classifier.predict(TEXTS))
    status, body, closed = read_answer(stalled)
    waited = time.monotonic() - began
    stalled.close()
    assert status == 408 and closed
    assert body["detail"].startswith("the request body did not arrive within this server's limit of 1 s")
    assert "--request-timeout-s" in body["detail"] and "\n" not in body["detail"]
    assert 0.8 * TIMEOUT < waited < TIMEOUT + 2


def test_stalled_headers_get_408_and_a_silent_connection_is_closed(service):
    partial, silent = open_socket(service), open_socket(service)
    partial.sendall(b"POST /predict HTTP/1.1\r\nhost: test\r\ncontent-")
    began = time.monotonic()
    assert predict(service, {"inputs": TEXTS[:1]})[0] == 200
    status, body, closed = read_answer(partial)
    assert status == 408 and closed and "request headers did not arrive" in body["detail"]
    assert silent.recv(100) == b""  # nothing sent: closed without an answer
    assert time.monotonic() - began < TIMEOUT + 2
    partial.close()
    silent.close()


def test_a_client_that_disconnects_mid_body_leaves_the_server_healthy(service, classifier):
    before = health(service)
    for _ in range(3):
        sock = open_socket(service)
        sock.sendall(HEAD.format(200).encode() + b'{"inputs": ["a fi')
        sock.close()
    time.sleep(0.2)
    status, body = predict(service, {"inputs": TEXTS})
    assert status == 200
    assert_same(body["predictions"], classifier.predict(TEXTS))
    after = health(service)
    assert after["requests"] == before["requests"] + 1  # the cut bodies never reached the model
    assert after["queued"] == 0 and after["abandoned"] == before["abandoned"]


def test_a_client_that_disconnects_while_queued_is_dropped_unpredicted(classifier):
    with running(classifier, max_wait_ms=1500, **LIMITS) as url:  # a lone request waits 1.5 s in the queue
        data = json.dumps({"inputs": TEXTS}).encode()
        sock = open_socket(url)
        sock.sendall(HEAD.format(len(data)).encode() + data)
        deadline = time.monotonic() + 10
        while health(url)["queued"] < 1:
            assert time.monotonic() < deadline, "the request never queued"
            time.sleep(0.02)
        sock.close()
        while health(url)["abandoned"] < 1:
            assert time.monotonic() < deadline, "the disconnect was not noticed"
            time.sleep(0.02)
        counters = health(url)
        assert counters["queued"] == 0 and counters["requests"] == 1 and counters["batches"] == 0
        assert counters["dropped"] == 1
        status, body = predict(url, {"inputs": TEXTS[:2]})
        assert status == 200
        assert_same(body["predictions"], classifier.predict(TEXTS[:2]))
        counters = health(url)
        assert counters["batches"] == 1 and counters["requests"] == 2 and counters["queued"] == 0


def test_faults_interleaved_with_valid_requests_from_threads(service, classifier):
    texts = [f"{TEXTS[i % 3]} number {i}" for i in range(24)]
    expected = classifier.predict(texts)
    faults = [
        (b'{"inputs": ["a film"', 400, "not valid JSON"),
        (json.dumps({"inputs": ["a film " * 100] * 8}).encode(), 413, "--max-body-bytes"),
        (json.dumps({"inputs": [["a", "b"]]}).encode(), 422, "not pairs"),
        (json.dumps({"inputs": {"text": "a film"}}).encode(), 422, ""),
        (json.dumps({"inputs": ["a film"] * 9}).encode(), 422, "--max-inputs"),
        (b"[1, 2, 3]", 422, ""),
    ]

    def valid(i: int) -> None:
        status, body = predict(service, {"inputs": [texts[i]]})
        assert status == 200, texts[i]
        assert_same(body["predictions"], [expected[i]], texts[i])

    def fault(i: int) -> None:
        data, code, words = faults[i % len(faults)]
        status, body = call(service, "POST", "/predict", data=data)
        assert status == code and words in json.dumps(body), (data[:40], status, body)

    before = health(service)
    work = [(valid, i) for i in range(len(texts))] + [(fault, i) for i in range(2 * len(faults))]
    work = [work[(7 * k) % len(work)] for k in range(len(work))]  # interleaved, the same order every run
    with ThreadPoolExecutor(8) as pool:
        for done in [pool.submit(job, i) for job, i in work]:
            done.result()
    after = health(service)
    assert after["requests"] - before["requests"] == len(texts)  # only the valid ones reached the model
    assert after["queued"] == 0


def test_connections_beyond_max_connections_get_503(classifier):
    def status_until(wanted: int) -> int:
        """Ask /health until the answer is `wanted` (the server sees connections open and close a little
        after the client does), for at most 5 s; the last status."""
        deadline = time.monotonic() + 5
        while True:
            parts = urlsplit(url)
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            connection.request("GET", "/health")
            status = connection.getresponse().status
            connection.close()
            if status == wanted or time.monotonic() > deadline:
                return status
            time.sleep(0.05)

    with running(classifier, max_connections=2, **LIMITS) as url:
        idle = [open_socket(url), open_socket(url)]
        assert status_until(503) == 503  # uvicorn's own plain-text 503
        for sock in idle:
            sock.close()
        assert status_until(200) == 200


def test_shutdown_is_not_held_up_by_a_stalled_client(classifier):
    stalled = None
    began = None
    with running(classifier, **LIMITS) as url:
        stalled = open_socket(url)
        stalled.sendall(HEAD.format(100).encode() + b"{")
        time.sleep(0.1)
        began = time.monotonic()
    assert time.monotonic() - began < TIMEOUT + 3  # graceful shutdown waits for it only until its 408
    stalled.close()
