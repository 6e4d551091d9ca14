"""The HTTP app of `lsllm serve`: /predict (micro-batched), /health and /labels, with OpenAPI docs."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from lsllm.errors import LsllmError
from lsllm.predictions import (
    Prediction,
    check_input,
    check_min_score,
    check_top_k,
    drop_weak_entities,
)
from lsllm.serving.batcher import MicroBatcher
from lsllm.serving.options import ServeOptions, timeout_detail

if TYPE_CHECKING:
    from lsllm.inference import Classifier


class PredictRequest(BaseModel):
    """Inputs in the form the run was trained on."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"inputs": ["a gorgeous, witty film", "a dull plot"], "top_k": 2},
                {"inputs": "Angela Merkel visited Paris", "min_score": 0.5},
                {"inputs": [["Angela", "Merkel", "visited", "Paris"]]},
            ]
        },
    )
    inputs: str | list[str | list[str]] = Field(
        description="One input, or a list of inputs. Sequence runs: a text, or a [text, text_pair] pair for"
        " runs trained with --text-pair. Token runs: a raw text (split into words and punctuation marks)"
        " or a list of words;"
        " a single list of words must itself be wrapped in a list."
    )
    top_k: int | None = Field(
        default=None,
        ge=1,
        description="Sequence runs only: also return the k most probable labels of each input, as 'top'.",
    )
    min_score: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Token runs only: leave out the entities whose score (the mean of their words' tag"
        " probabilities) is below this; tags and word scores stay as predicted.",
    )


class PredictResponse(BaseModel):
    predictions: list[Prediction] = Field(
        description="One row per input, in input order, as `Classifier.predict` returns them."
    )


class Batching(BaseModel):
    max_batch_size: int = Field(description="most inputs merged into one prediction call")
    max_wait_ms: float = Field(description="longest a request waits for others to join its batch")
    requests: int = Field(description="requests received since start")
    inputs: int = Field(description="inputs received since start")
    batches: int = Field(description="prediction batches run; fewer than requests when requests were merged")
    max_requests_per_batch: int = Field(description="most requests answered by one batch so far")
    queued: int = Field(description="requests waiting for a batch now")
    abandoned: int = Field(description="requests whose client went away before the answer")
    dropped: int = Field(description="abandoned requests removed from the queue without being predicted")


class Health(BaseModel):
    status: str = Field(description="'ok' while the service answers")
    model_loaded: bool = Field(description="whether the model is loaded and taking requests")
    batching: Batching


class ModelInfo(BaseModel):
    task: str = Field(
        description="'sequence' (labels per input), 'token' (one tag per word) or 'regression' (a number)"
    )
    labels: list[str | int] = Field(
        description="the label set, in the order of the head's outputs (regression: the target's name)"
    )
    multi_label: bool = Field(description="whether an input may have several labels (sequence runs)")
    thresholds: dict[str, float] | None = Field(
        description="multi-label runs: each label's decision threshold, tuned on dev"
    )
    offsets: dict[str, float] | None = Field(
        description="--metric macro_f1 runs: each label's offset, tuned on dev, added to its logit"
    )
    model: str | None = Field(description="the base model the run was trained from")
    attention: str | None = Field(description="'causal' (LS-LLaMA) or 'bidirectional' (LS-unLLaMA)")
    pooling: str | None = Field(description="how token states become one vector (sequence runs)")
    max_length: int = Field(description="longest input in tokens the model reads")
    text_pair: bool = Field(description="whether sequence inputs are [text, text_pair] pairs")


class Error(BaseModel):
    detail: str


def invalid(message: str, *loc: str | int) -> RequestValidationError:
    """A 422 in FastAPI's own shape, so clients parse one format for every invalid request."""
    return RequestValidationError([{"type": "value_error", "loc": ("body", *loc), "msg": message}])


def prepare_inputs(request: PredictRequest, classifier: Classifier, options: ServeOptions) -> list:
    """Check a request's inputs against the run and the limits, as `Classifier.predict` takes them."""
    single = isinstance(request.inputs, str)
    items = [request.inputs] if single else request.inputs
    config = classifier.data.config
    if not items:
        raise invalid("no inputs; give at least one", "inputs")
    if len(items) > options.max_inputs:
        raise invalid(
            f"{len(items)} inputs in one request, more than this server's limit of {options.max_inputs}"
            " (--max-inputs); split them over several requests",
            "inputs",
        )
    try:
        check_top_k(request.top_k, config.task)
    except LsllmError as error:
        raise invalid(str(error), "top_k") from None
    try:
        check_min_score(request.min_score, config.task)
    except LsllmError as error:
        raise invalid(str(error), "min_score") from None
    prepared = []
    for i, item in enumerate(items):
        loc = ("inputs",) if single else ("inputs", i)
        chars = len(item) if isinstance(item, str) else sum(len(part) for part in item)
        if chars > options.max_chars:
            raise invalid(
                f"input {i + 1} has {chars} characters, more than this server's limit of {options.max_chars}"
                " (--max-chars); shorten or split it",
                *loc,
            )
        try:
            prepared.append(check_input(item, i + 1, config.task, config.text_pair))
        except LsllmError as error:
            raise invalid(str(error), *loc) from None
    return prepared


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, by its Content-Length or, if it has none (chunked),
    as it arrives; 408 for a body that has not arrived in full within `timeout_s` of the headers (a client
    that stalls would otherwise hold its request open forever). The body is read here in full (it is
    small) and handed on to the app."""

    def __init__(self, app, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self.too_large(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except asyncio.TimeoutError:
                return await self.timed_out(scope, receive, send)
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self.discard_rest(receive, message, deadline)
                return await self.too_large(scope, receive, send)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def discard_rest(self, receive, message: dict, deadline: float) -> None:
        """Read and drop the rest of an oversize body (up to 16x the limit, until the deadline) before
        answering: closing a connection with unread data resets it, and the client never sees the 413."""
        loop, dropped = asyncio.get_running_loop(), 0
        while message.get("more_body", False) and dropped <= 16 * self.max_bytes:
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except asyncio.TimeoutError:
                return
            if message["type"] == "http.disconnect":
                return
            dropped += len(message.get("body", b""))

    async def too_large(self, scope, receive, send) -> None:
        response = JSONResponse(
            {
                "detail": f"the request body is larger than this server's limit of {self.max_bytes} bytes"
                " (--max-body-bytes); send fewer or shorter inputs per request"
            },
            status_code=413,
            headers={"connection": "close"},  # the rest of the body is never read
        )
        await response(scope, receive, send)

    async def timed_out(self, scope, receive, send) -> None:
        response = JSONResponse(
            {"detail": timeout_detail("body", self.timeout_s)},
            status_code=408,
            headers={"connection": "close"},  # uvicorn closes the connection once this is sent
        )
        await response(scope, receive, send)


async def disconnected(request: Request) -> None:
    """Returns once the client has gone away (after its body has been read, nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def json_errors(request: Request, error: RequestValidationError) -> JSONResponse:
    """A body that is not JSON at all is the client's syntax error (400), with the parser's reason."""
    for problem in error.errors():
        if problem.get("type") == "json_invalid":
            reason = problem.get("ctx", {}).get("error", "decode error")
            detail = (
                f'the request body is not valid JSON ({reason}); send an object like {{"inputs": ["text"]}}'
            )
            return JSONResponse({"detail": detail}, status_code=400)
    return await request_validation_exception_handler(request, error)


def create_app(classifier: Classifier, options: ServeOptions | None = None) -> FastAPI:
    """The FastAPI app: /predict (micro-batched), /health and /labels, with OpenAPI docs at /docs."""
    options = options or ServeOptions()
    config = classifier.data.config

    def predict(inputs: list, top_k: int | None) -> list[dict]:
        return classifier.predict(inputs, batch_size=options.batch_size, source="requests", top_k=top_k)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.batcher = MicroBatcher(predict, options.max_batch_size, options.max_wait_ms / 1000)
        app.state.batcher.start()
        try:
            yield
        finally:
            await app.state.batcher.stop()  # uvicorn calls this once in-flight requests are answered

    app = FastAPI(
        title="lsllm",
        summary=f"A label-supervised {config.task} classifier over {config.model}.",
        description="POST inputs to /predict; /labels describes the model. Concurrent requests are"
        " merged into shared prediction batches.",
        lifespan=lifespan,
    )
    app.state.options = options  # make_server reads the connection limits from here
    app.add_middleware(BodyLimit, max_bytes=options.max_body_bytes, timeout_s=options.request_timeout_s)
    app.add_exception_handler(RequestValidationError, json_errors)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses={400: {"model": Error}, 413: {"model": Error}, 503: {"model": Error}},
    )
    async def predict_endpoint(request: PredictRequest, http: Request) -> PredictResponse:
        """Labels with probabilities (sequence runs), numbers (regression runs) or tags and entities (token
        runs), one row per input."""
        inputs = prepare_inputs(request, classifier, options)
        batcher: MicroBatcher = app.state.batcher
        if not batcher.running:
            raise HTTPException(503, "the server is shutting down; retry on another instance")
        # A client that goes away while its request waits gives it up: a queued one is never predicted.
        answer = asyncio.ensure_future(batcher.submit(inputs, request.top_k))
        gone = asyncio.ensure_future(disconnected(http))
        try:
            await asyncio.wait((answer, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (gone, answer):
                if not task.done():
                    task.cancel()
                    with suppress(asyncio.CancelledError):
                        await task
        if answer.cancelled():
            return Response(status_code=499)  # nobody reads it: nginx's code for "client closed request"
        try:
            rows = answer.result()
        except LsllmError as error:
            raise invalid(str(error), "inputs") from None
        return PredictResponse(predictions=drop_weak_entities(rows, request.min_score))

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """Liveness and readiness, with the batcher's counters."""
        batcher: MicroBatcher = app.state.batcher
        batching = Batching(
            max_batch_size=options.max_batch_size,
            max_wait_ms=options.max_wait_ms,
            queued=batcher.queued,
            **batcher.stats.to_dict(),
        )
        return Health(status="ok", model_loaded=batcher.running, batching=batching)

    @app.get("/labels", response_model=ModelInfo)
    async def labels() -> ModelInfo:
        """The task, the label set and the options the model was trained with."""
        names = list(map(str, classifier.labels))

        def per_label(values: tuple[float, ...] | None) -> dict[str, float] | None:
            return None if values is None else dict(zip(names, values, strict=True))

        return ModelInfo(
            task=config.task,
            labels=classifier.labels,
            multi_label=classifier.decision.shape == "multi",
            thresholds=per_label(classifier.decision.thresholds),
            offsets=per_label(classifier.decision.offsets),
            model=config.model,
            attention=config.attention,
            pooling=config.pooling if config.task != "token" else None,
            max_length=config.max_length,
            text_pair=bool(config.text_pair),
        )

    return app
