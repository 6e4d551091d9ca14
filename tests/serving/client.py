"""An lsllm service in a thread of the test process, and a plain HTTP client for it."""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

from lsllm.inference import Classifier
from lsllm.serving.app import create_app
from lsllm.serving.options import ServeOptions, bind, url_of
from lsllm.serving.server import make_server

TEXTS = ["the film was good", "what a boring plot", "the acting was great and the ending awful"]


@contextmanager
def running(classifier: Classifier, **options):
    """The service in a thread of this process, on a free loopback port; yields its URL."""
    server = make_server(create_app(classifier, ServeOptions(**options)))
    sock = bind("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def call(url: str, method: str, path: str, body=None, data=None, headers: dict | None = None):
    """One request on its own connection: (status, parsed JSON body)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        if body is not None:
            data = json.dumps(body).encode()
        connection.request(
            method, path, body=data, headers={"content-type": "application/json", **(headers or {})}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def predict(url: str, body) -> tuple[int, dict]:
    return call(url, "POST", "/predict", body)


def assert_same(got, expected, path="row"):
    """Equal structures; floats within 1e-5 (another batch composition may change the last digits)."""
    if isinstance(expected, float):
        assert math.isclose(got, expected, abs_tol=1e-5), path
    elif isinstance(expected, dict):
        assert got.keys() == expected.keys(), path
        for key in expected:
            assert_same(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), path
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    else:
        assert got == expected, path


def messages(body: dict) -> str:
    detail = body["detail"]
    return detail if isinstance(detail, str) else " | ".join(problem["msg"] for problem in detail)
