"""Micro-batching: requests that arrive together are merged into one prediction call on one worker thread."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import groupby

logger = logging.getLogger(__name__)

# predict(inputs, top_k) -> one row per input
Predict = Callable[[list, int | None], list[dict]]


@dataclass(eq=False)  # compared by identity: a cancelled job is removed from the queue by `is`
class _Job:
    inputs: list
    top_k: int | None
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """What the batcher has done so far; `max_requests_per_batch` > 1 means requests were merged."""

    requests: int = 0
    inputs: int = 0
    batches: int = 0
    max_requests_per_batch: int = 0
    abandoned: int = 0  # requests given up by their caller (client gone) before their answer
    dropped: int = 0  # abandoned while still queued: removed without being predicted

    def to_dict(self) -> dict:
        return asdict(self)


class MicroBatcher:
    """Queues requests and runs them together: up to `max_batch_size` inputs per call, waiting at most
    `max_wait_s` after the oldest request for others to join. Prediction runs on one worker thread, so
    the event loop keeps accepting requests meanwhile, and they form the next batch."""

    def __init__(self, predict: Predict, max_batch_size: int, max_wait_s: float) -> None:
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._waiting: deque[_Job] = deque()
        self._arrived = asyncio.Event()
        self._closing = False
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="lsllm-predict")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Take no new requests, answer every queued one, then end the worker thread."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task
        self._worker.shutdown(wait=True)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._closing

    @property
    def queued(self) -> int:
        """Requests waiting for a batch now (not counting the batch being predicted)."""
        return len(self._waiting)

    async def submit(self, inputs: list, top_k: int | None = None) -> list[dict]:
        """The prediction rows for these inputs; raises what predicting them alone would raise."""
        if not self.running:
            raise RuntimeError("the batcher is not running")
        job = _Job(inputs, top_k, asyncio.get_running_loop().create_future())
        self._waiting.append(job)
        self.stats.requests += 1
        self.stats.inputs += len(inputs)
        self._arrived.set()
        try:
            return await job.future
        except asyncio.CancelledError:  # the caller gave up (its client went away): drop it if still queued
            self.stats.abandoned += 1
            if job in self._waiting:
                self._waiting.remove(job)
                self.stats.dropped += 1
            raise

    async def _run(self) -> None:
        jobs: list[_Job] = []
        reason = "the server is stopping"
        try:
            await self._serve(jobs)
        except Exception as error:  # a bug in this loop: say so, and stop taking requests (status 503)
            logger.exception("the prediction worker stopped")
            reason = f"the prediction worker stopped ({type(error).__name__}: {error})"
        finally:  # however the loop ended, no request is left waiting for an answer that never comes
            self._closing = True
            for job in (*jobs, *self._waiting):
                if not job.future.done():
                    job.future.set_exception(RuntimeError(reason))
            self._waiting.clear()

    async def _serve(self, jobs: list[_Job]) -> None:
        """The worker loop; `jobs` holds the batch being predicted, for `_run` to fail if the loop dies."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            await self._wait_for_company()
            if not self._waiting:  # every queued request was abandoned while waiting for company
                continue
            jobs[:] = self._take_batch()
            results = await loop.run_in_executor(self._worker, self._predict_jobs, jobs)
            self.stats.batches += 1
            self.stats.max_requests_per_batch = max(self.stats.max_requests_per_batch, len(jobs))
            for job, result in zip(jobs, results, strict=True):
                if job.future.done():  # the client went away
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
            jobs.clear()

    async def _wait_for_company(self) -> None:
        """Until the batch is full, the oldest request has waited `max_wait_s`, or we are stopping."""
        deadline = self._waiting[0].arrived + self.max_wait_s
        while (
            self._waiting
            and not self._closing
            and sum(len(job.inputs) for job in self._waiting) < self.max_batch_size
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take_batch(self) -> list[_Job]:
        """The oldest requests that fit in one batch; a request larger than a batch runs alone."""
        jobs = [self._waiting.popleft()]
        size = len(jobs[0].inputs)
        while self._waiting and size + len(self._waiting[0].inputs) <= self.max_batch_size:
            size += len(self._waiting[0].inputs)
            jobs.append(self._waiting.popleft())
        return jobs

    def _predict_jobs(self, jobs: list[_Job]) -> list[list[dict] | BaseException]:
        """One call per distinct top_k; if a merged call fails, each request is retried alone, so a bad
        input fails only its own request (and its error message counts inputs within that request)."""
        results: list[list[dict] | BaseException] = [None] * len(jobs)
        order = sorted(range(len(jobs)), key=lambda i: (jobs[i].top_k is not None, jobs[i].top_k or 0))
        for _, group in groupby(order, key=lambda i: jobs[i].top_k):
            group = list(group)
            try:
                rows = self.predict([x for i in group for x in jobs[i].inputs], jobs[group[0]].top_k)
            except Exception as error:
                if len(group) == 1:
                    results[group[0]] = error
                    continue
                for i in group:
                    results[i] = self._predict_alone(jobs[i])
                continue
            start = 0
            for i in group:
                results[i] = rows[start : start + len(jobs[i].inputs)]
                start += len(jobs[i].inputs)
        return results

    def _predict_alone(self, job: _Job) -> list[dict] | BaseException:
        try:
            return self.predict(job.inputs, job.top_k)
        except Exception as error:
            return error
