"""The micro-batcher on its own: merged calls, a failing input failing only its own request, and
abandoned requests dropped without leaving anything hanging."""

from __future__ import annotations

import asyncio
import time

from lsllm.serving.batcher import MicroBatcher


def test_a_failing_input_fails_only_its_own_request():
    """The batcher retries a failed merged call request by request, so good neighbours still get answers."""

    def fake_predict(inputs: list, top_k):
        if "bad" in inputs:
            raise ValueError(f"input {inputs.index('bad') + 1} is bad")
        return [{"echo": x, "top_k": top_k} for x in inputs]

    async def scenario():
        batcher = MicroBatcher(fake_predict, max_batch_size=64, max_wait_s=0.2)
        batcher.start()
        jobs = [(["a", "b"], None), (["x", "bad"], None), (["c"], 3), (["d"], None)]
        results = await asyncio.gather(*(batcher.submit(*job) for job in jobs), return_exceptions=True)
        await batcher.stop()
        return results, batcher.stats

    results, stats = asyncio.run(scenario())
    assert results[0] == [{"echo": "a", "top_k": None}, {"echo": "b", "top_k": None}]
    assert (
        isinstance(results[1], ValueError) and str(results[1]) == "input 2 is bad"
    )  # counted in its request
    assert results[2] == [{"echo": "c", "top_k": 3}]
    assert results[3] == [{"echo": "d", "top_k": None}]
    assert stats.batches == 1 and stats.max_requests_per_batch == 4 and stats.inputs == 6


def test_the_batcher_drops_abandoned_requests_and_fails_none_silently():
    """Unit level: a cancelled queued request is never predicted; one cancelled mid-prediction does not
    disturb its neighbours; a queue emptied by cancellations does not stop the worker; and if the worker
    dies, every waiting request gets an error instead of waiting forever."""
    calls: list[list] = []

    def fake_predict(inputs: list, top_k):
        calls.append(list(inputs))
        time.sleep(0.1)
        return [{"echo": x} for x in inputs]

    async def scenario():
        batcher = MicroBatcher(fake_predict, max_batch_size=64, max_wait_s=0.2)
        batcher.start()
        keep = asyncio.ensure_future(batcher.submit(["a"]))
        drop = asyncio.ensure_future(batcher.submit(["b"]))
        await asyncio.sleep(0.05)
        drop.cancel()  # while queued
        assert await keep == [{"echo": "a"}]
        assert calls == [["a"]] and batcher.queued == 0

        first = asyncio.ensure_future(batcher.submit(["c"]))
        second = asyncio.ensure_future(batcher.submit(["d"]))
        await asyncio.sleep(0.25)  # the batch is being predicted
        first.cancel()
        assert await second == [{"echo": "d"}]

        alone = asyncio.ensure_future(batcher.submit(["e"]))
        await asyncio.sleep(0.05)
        alone.cancel()  # the queue empties while the worker waits for company
        await asyncio.sleep(0.3)
        assert await batcher.submit(["f"]) == [{"echo": "f"}]
        stats = batcher.stats
        await batcher.stop()
        return stats

    stats = asyncio.run(scenario())
    assert calls == [["a"], ["c", "d"], ["f"]]
    assert stats.abandoned == 3 and stats.dropped == 2 and stats.requests == 6 and stats.batches == 3

    def broken(jobs):  # a bug in the worker loop itself, not in a prediction
        raise ValueError("broken")

    async def dying():
        batcher = MicroBatcher(fake_predict, max_batch_size=64, max_wait_s=0.05)
        batcher._predict_jobs = broken
        batcher.start()
        results = await asyncio.wait_for(
            asyncio.gather(batcher.submit(["a"]), batcher.submit(["b"]), return_exceptions=True), 5
        )
        still_running = batcher.running
        await batcher.stop()
        return results, still_running

    results, still_running = asyncio.run(dying())
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert all("worker stopped (ValueError: broken)" in str(r) for r in results)
    assert not still_running
