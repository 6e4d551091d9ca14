"""`lsllm serve` over real HTTP on loopback: answers, micro-batching, limits, errors and graceful shutdown."""

from __future__ import annotations

import http.client
import inspect
import re
import select
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import pytest

import lsllm
from lsllm.cli import main
from lsllm.inference import Classifier
from lsllm.serving.options import bind
from tests.helpers import saved_run
from tests.serving.client import TEXTS, assert_same, call, messages, predict, running

LIMITS = {"max_body_bytes": 4096, "max_inputs": 8, "max_chars": 200}


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    return {
        "sequence": saved_run(tiny_model, root / "seq", "sequence", "causal"),
        "token": saved_run(tiny_model, root / "tok", "token", "bidirectional"),
    }


@pytest.fixture(scope="module")
def sequence_service(runs):
    classifier = lsllm.load(runs["sequence"], precision="fp32")
    with running(classifier, max_wait_ms=100, max_batch_size=64, **LIMITS) as url:
        yield url, classifier


@pytest.fixture(scope="module")
def token_service(runs):
    classifier = lsllm.load(runs["token"], precision="fp32")
    with running(classifier, max_wait_ms=20, **LIMITS) as url:
        yield url, classifier


def test_sequence_predictions_are_those_of_the_python_api(sequence_service, runs):
    url, _ = sequence_service
    reference = lsllm.load(runs["sequence"], precision="fp32")
    status, body = predict(url, {"inputs": TEXTS})
    assert status == 200
    assert_same(body["predictions"], reference.predict(TEXTS))
    status, body = predict(url, {"inputs": TEXTS[0]})  # one text, not in a list
    assert status == 200
    assert_same(body["predictions"], reference.predict(TEXTS[:1]))


def test_token_predictions_are_those_of_the_python_api(token_service, runs):
    url, _ = token_service
    inputs = ["John Smith visited  Paris", ["Mary", "Jones", "left", "New", "York"]]
    status, body = predict(url, {"inputs": inputs})
    assert status == 200
    expected = lsllm.load(runs["token"], precision="fp32").predict(inputs)
    assert_same(body["predictions"], expected)
    assert body["predictions"][0]["tokens"] == ["John", "Smith", "visited", "Paris"]


@pytest.mark.skipif(
    "top_k" not in inspect.signature(Classifier.predict).parameters, reason="Classifier.predict has no top_k"
)
def test_top_k_is_passed_to_predict_for_sequence_runs_only(sequence_service, token_service):
    url, classifier = sequence_service
    status, body = predict(url, {"inputs": TEXTS, "top_k": 2})
    assert status == 200
    assert_same(body["predictions"], classifier.predict(TEXTS, top_k=2))
    status, body = predict(token_service[0], {"inputs": "John Smith", "top_k": 2})
    assert status == 422 and "top_k applies to sequence runs only" in messages(body)


def test_min_score_leaves_out_weaker_entities_for_token_runs_only(token_service, sequence_service):
    url, classifier = token_service
    inputs = ["John Smith visited  Paris", ["Mary", "Jones", "left", "New", "York"]]
    scores = sorted(e["score"] for row in classifier.predict(inputs) for e in row["entities"])
    assert len(scores) >= 3 and scores[0] < scores[-1]
    middle = len(scores) // 2
    assert scores[middle] - scores[middle - 1] > 1e-4  # far from every score: batching moves the last digits
    threshold = (scores[middle - 1] + scores[middle]) / 2
    status, body = predict(url, {"inputs": inputs, "min_score": threshold})
    assert status == 200
    expected = classifier.predict(inputs, min_score=threshold)
    assert_same(body["predictions"], expected)
    kept = [e["score"] for row in body["predictions"] for e in row["entities"]]
    assert 0 < len(kept) < len(scores) and min(kept) >= threshold
    status, body = predict(url, {"inputs": inputs, "min_score": 1.5})
    assert status == 422 and "min_score" in str(body["detail"][0]["loc"])
    status, body = predict(sequence_service[0], {"inputs": TEXTS, "min_score": 0.5})
    assert status == 422 and "min_score applies to token runs only" in messages(body)


def test_concurrent_clients_get_their_own_answers_from_merged_batches(sequence_service):
    url, classifier = sequence_service
    texts = [f"{TEXTS[i % 3]} {' and'.join(['good'] * (i % 5))} {i}" for i in range(16)]
    expected = classifier.predict(texts)
    _, before = call(url, "GET", "/health")
    answers: dict[int, tuple[int, dict]] = {}
    start = threading.Barrier(len(texts))

    def client(i: int) -> None:
        start.wait()
        answers[i] = predict(url, {"inputs": [texts[i]]})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for i, text in enumerate(texts):
        status, body = answers[i]
        assert status == 200, text
        assert_same(body["predictions"], [expected[i]], text)
    _, after = call(url, "GET", "/health")
    requests = after["batching"]["requests"] - before["batching"]["requests"]
    batches = after["batching"]["batches"] - before["batching"]["batches"]
    assert requests == len(texts) and batches < requests
    assert after["batching"]["max_requests_per_batch"] > 1


def test_malformed_json_is_a_400_that_says_so(sequence_service):
    status, body = call(sequence_service[0], "POST", "/predict", data=b'{"inputs": ["a film"')
    assert status == 400 and "not valid JSON" in body["detail"]


def test_unknown_and_wrongly_typed_fields_are_422s_naming_the_field(sequence_service):
    url, _ = sequence_service
    status, body = predict(url, {"inputs": ["a film"], "temperature": 0.5})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "temperature"]
    assert "Extra inputs are not permitted" in body["detail"][0]["msg"]
    status, body = predict(url, {"inputs": [3]})
    assert status == 422
    status, body = predict(url, {"text": "a film"})
    assert status == 422 and ["body", "inputs"] in [problem["loc"] for problem in body["detail"]]


def test_oversize_bodies_are_413s_by_length_or_as_they_arrive(sequence_service):
    url, _ = sequence_service
    big = {"inputs": ["a film " * 100] * 8}
    status, body = predict(url, big)
    assert status == 413 and "--max-body-bytes" in body["detail"]
    chunks = (b" " * 1000 for _ in range(10))  # no Content-Length: sent chunked
    status, body = call(url, "POST", "/predict", data=chunks)
    assert status == 413 and "4096 bytes" in body["detail"]
    status, _ = predict(url, {"inputs": TEXTS})  # the service carries on
    assert status == 200


def test_too_many_or_too_long_inputs_are_422s_naming_the_limit(sequence_service):
    url, _ = sequence_service
    status, body = predict(url, {"inputs": ["a film"] * 9})
    assert status == 422 and "9 inputs" in messages(body) and "--max-inputs" in messages(body)
    status, body = predict(url, {"inputs": ["a film", "x" * 201]})
    assert (
        status == 422 and "input 2 has 201 characters" in messages(body) and "--max-chars" in messages(body)
    )
    assert body["detail"][0]["loc"] == ["body", "inputs", 1]


def test_empty_or_misshapen_inputs_are_422s(sequence_service, token_service):
    status, body = predict(sequence_service[0], {"inputs": ["a film", "  "]})
    assert status == 422 and "input 2 is empty" in messages(body)
    status, body = predict(sequence_service[0], {"inputs": []})
    assert status == 422 and "no inputs" in messages(body)
    status, body = predict(sequence_service[0], {"inputs": [["a film", "a plot"]]})
    assert status == 422 and "not pairs" in messages(body)
    status, body = predict(token_service[0], {"inputs": ["John Smith", " "]})
    assert status == 422 and "input 2 has no words" in messages(body)


def test_labels_describe_the_model(sequence_service, token_service, tiny_model):
    status, body = call(sequence_service[0], "GET", "/labels")
    assert status == 200
    assert body == {
        "task": "sequence",
        "labels": ["neg", "pos", "neutral"],
        "model": str(tiny_model),
        "attention": "causal",
        "pooling": "last",
        "max_length": 256,
        "text_pair": False,
        "multi_label": False,
        "thresholds": None,
        "offsets": None,
    }
    _, body = call(token_service[0], "GET", "/labels")
    assert body["task"] == "token" and body["attention"] == "bidirectional" and body["pooling"] is None
    assert body["labels"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_health_and_openapi_docs(sequence_service):
    url, _ = sequence_service
    status, body = call(url, "GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["model_loaded"] is True
    assert body["batching"]["max_batch_size"] == 64
    status, schema = call(url, "GET", "/openapi.json")
    assert status == 200 and {"/predict", "/health", "/labels"} <= set(schema["paths"])
    request = schema["components"]["schemas"]["PredictRequest"]
    assert request["additionalProperties"] is False and request["properties"]["inputs"]["description"]
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("GET", "/docs")
    response = connection.getresponse()
    assert response.status == 200 and b"swagger" in response.read().lower()
    connection.close()


def test_serve_refuses_a_busy_port_before_loading(runs, capsys):
    with bind("127.0.0.1", 0) as busy:
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(runs["sequence"]), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_serve_without_the_serve_extra_is_a_one_line_error_naming_the_install(runs, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "uvicorn" else find_spec(name)
    )
    assert main(["serve", str(runs["sequence"]), "--port", "0"]) == 2
    error = capsys.readouterr().err.strip()
    assert (
        error
        == "lsllm: error: lsllm serve needs uvicorn, which a plain install leaves out; install them with:"
        " pip install 'lsllm[serve]'"
    )


def test_sigterm_finishes_the_request_in_flight_and_exits_0(runs):
    run = str(runs["sequence"])
    command = [
        sys.executable,
        "-m",
        "lsllm.cli",
        "serve",
        run,
        "--precision",
        "fp32",
        "--port",
        "0",
        "--max-wait-ms",
        "2000",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 120)
        line = process.stdout.readline() if ready else ""
        found = re.search(r"at (http://127\.0\.0\.1:\d+) \(API docs: \1/docs\)", line)
        assert found, (
            f"no URL in {line!r}; stderr: {process.stderr.read() if process.poll() is not None else ''}"
        )
        url = found.group(1)
        answer = {}

        def client() -> None:
            answer["status"], answer["body"] = predict(url, {"inputs": TEXTS})

        thread = threading.Thread(target=client)
        thread.start()
        while call(url, "GET", "/health")[1]["batching"]["requests"] < 1:  # the request is queued, waiting
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        thread.join(60)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert answer["status"] == 200
    assert_same(answer["body"]["predictions"], lsllm.load(run, precision="fp32").predict(TEXTS))
    assert "stopped after answering every request" in process.stdout.read()
