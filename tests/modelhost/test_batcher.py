"""The micro-batcher: concurrent requests share batches, the queue is bounded, failures and
cancellations reach only those they concern."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.modelhost.batched import BatchedSentimentAnalyzer
from services.modelhost.batcher import BusyError, MicroBatcher
from tests.fakes.models import FakeSentimentModel


class Recorder:
    """A batch function that records its batches and can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.set()
        self.gate.wait(timeout=10)
        return [item * 10 for item in items]


async def test_concurrent_items_run_as_one_batch_in_order() -> None:
    fn = Recorder()
    batcher = MicroBatcher(fn, name="t", max_batch=64, max_wait_ms=50)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    assert results == [i * 10 for i in range(20)]
    assert fn.batches == [list(range(20))]


async def test_batches_are_capped_at_max_batch() -> None:
    fn = Recorder()
    batcher = MicroBatcher(fn, name="t", max_batch=8, max_wait_ms=50)
    await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    assert [len(b) for b in fn.batches] == [8, 8, 4]


async def test_a_lone_request_does_not_wait_for_company_forever() -> None:
    fn = Recorder()
    batcher = MicroBatcher(fn, name="t", max_batch=64, max_wait_ms=1)
    assert await batcher.submit(3) == 30
    assert await batcher.run([1, 2]) == [10, 20]
    assert fn.batches == [[3], [1, 2]]


async def test_requests_arriving_during_a_batch_form_the_next_one() -> None:
    fn = Recorder()
    fn.gate.clear()
    batcher = MicroBatcher(fn, name="t", max_batch=64, max_wait_ms=0)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.to_thread(fn.started.wait, 10)
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0.01)
    fn.gate.set()
    assert await first == 0 and [await r for r in rest] == [10, 20, 30, 40, 50]
    assert fn.batches == [[0], [1, 2, 3, 4, 5]]


async def test_a_full_queue_answers_busy_at_once() -> None:
    fn = Recorder()
    fn.gate.clear()
    batcher = MicroBatcher(fn, name="sentiment", max_batch=1, max_wait_ms=0, max_queue=2)
    running = asyncio.ensure_future(batcher.submit(0))
    await asyncio.to_thread(fn.started.wait, 10)
    waiting = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0)
    with pytest.raises(BusyError) as busy:
        await batcher.submit(3)
    assert "busy" in busy.value.user_message and "try again" in busy.value.user_message
    fn.gate.set()
    assert [await f for f in [running, *waiting]] == [0, 10, 20]


async def test_a_failing_batch_fails_its_callers_and_the_next_batch_runs() -> None:
    calls = 0

    def flaky(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("model crashed")
        return items

    batcher = MicroBatcher(flaky, name="t", max_batch=4, max_wait_ms=20)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert await batcher.submit(7) == 7


async def test_cancelled_requests_are_skipped() -> None:
    fn = Recorder()
    fn.gate.clear()
    batcher = MicroBatcher(fn, name="t", max_batch=1, max_wait_ms=0)
    running = asyncio.ensure_future(batcher.submit(0))
    await asyncio.to_thread(fn.started.wait, 10)
    gone = asyncio.ensure_future(batcher.submit(1))
    kept = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    gone.cancel()
    fn.gate.set()
    assert await running == 0 and await kept == 20
    assert [1] not in fn.batches


async def test_items_with_different_keys_never_share_a_batch() -> None:
    batches: list[list[str]] = []

    def draw(items: list[str]) -> list[str]:
        batches.append(items)
        return items

    batcher = MicroBatcher(draw, name="t", max_batch=8, max_wait_ms=20, key=len)
    await asyncio.gather(*(batcher.submit(s) for s in ["aa", "b", "cc", "d", "ee"]))
    assert sorted(batches) == [["aa", "cc", "ee"], ["b", "d"]]


async def test_batched_sentiment_shares_one_forward_pass() -> None:
    model = FakeSentimentModel()
    analyzer = BatchedSentimentAnalyzer(model, max_batch=64, max_wait_ms=50)
    texts = [f"I love it {i}" if i % 2 else f"awful {i}" for i in range(16)]
    results = await asyncio.gather(*(analyzer.analyze([t]) for t in texts))
    assert [r[0].label for r in results] == ["positive" if i % 2 else "negative" for i in range(16)]
    assert len(model.batches) == 1


async def test_an_async_batch_function_runs_on_the_event_loop() -> None:
    calls: list[list[int]] = []

    async def remote(items: list[int]) -> list[int]:
        calls.append(items)
        await asyncio.sleep(0)
        return [-item for item in items]

    batcher = MicroBatcher(remote, name="client", max_batch=64, max_wait_ms=20)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(5))) == [0, -1, -2, -3, -4]
    assert calls == [[0, 1, 2, 3, 4]]
