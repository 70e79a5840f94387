"""Micro-batching: concurrent requests to one model run together, off the event loop.

Each model gets one :class:`MicroBatcher`. Callers ``submit`` one item (or ``run`` several);
a worker task on the event loop collects waiting requests until ``max_batch`` items are in
hand or the oldest has waited ``max_wait_ms``, then calls the model's batch function in the
model's own worker thread. While a batch runs, new requests queue up and form the next batch,
so under load batches fill by themselves and a lone request waits at most ``max_wait_ms``.

The waiting line is bounded: when ``max_queue`` requests already wait, ``submit`` raises
:class:`BusyError` at once instead of letting latency grow without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

from services.types import ProviderError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class BusyError(ProviderError):
    """A model's queue is full; the user should try again shortly."""

    def __init__(self, model: str) -> None:
        super().__init__(
            "I'm busy with other requests right now, try again in a few seconds.",
            detail=f"model {model}: queue full (busy, try again)",
        )
        self.model = model


@dataclass(slots=True)
class _Request(Generic[T, R]):
    items: list[T]
    key: Hashable
    future: asyncio.Future[list[R]]
    enqueued: float = field(default_factory=time.monotonic)


class MicroBatcher(Generic[T, R]):
    """Runs ``fn`` over batches of concurrently submitted items, one batch at a time.

    ``fn`` takes a list of items and returns one result per item, in order; it runs in a
    thread owned by this batcher, so it may block (a forward pass) without stalling the event
    loop, and two batches of the same model never run at once. An ``async`` ``fn`` runs on the
    event loop instead: a client that turns many concurrent calls into one remote request.
    ``key`` splits items that cannot share a batch (images of different sizes); requests with
    another key wait for a later batch.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]] | Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        name: str,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 128,
        key: Callable[[T], Hashable] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1")
        self.name = name
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self._fn: Callable[[list[T]], Sequence[R]] | None = None
        self._async_fn: Callable[[list[T]], Awaitable[Sequence[R]]] | None = None
        if inspect.iscoroutinefunction(fn):
            self._async_fn = cast(Callable[[list[T]], Awaitable[Sequence[R]]], fn)
        else:
            self._fn = cast(Callable[[list[T]], Sequence[R]], fn)
        self._key = key
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")
        self._waiting: deque[_Request[T, R]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batch_sizes: list[int] = []  # recent batch sizes, for tests and benchmarks

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def submit(self, item: T) -> R:
        """The result for one item, computed in a batch with whatever else is waiting."""
        return (await self.run([item]))[0]

    async def run(self, items: Sequence[T]) -> list[R]:
        """Results for ``items``, which stay together in one batch (alone if they fill it)."""
        if not items:
            return []
        self._ensure_worker()
        assert self._wakeup is not None and self._loop is not None
        if len(self._waiting) >= self.max_queue:
            raise BusyError(self.name)
        key = self._key(items[0]) if self._key is not None else None
        request: _Request[T, R] = _Request(list(items), key, self._loop.create_future())
        self._waiting.append(request)
        self._wakeup.set()
        return await request.future

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- worker ------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A new event loop (a fresh asyncio.run, a new test): requests of the old one can
            # never be answered, and its event belongs to it.
            self._loop = loop
            self._waiting.clear()
            self._wakeup = asyncio.Event()
            self._worker = None
        if self._worker is None or self._worker.done():
            # The worker lives only while requests wait, so no task idles on a closed loop.
            self._worker = loop.create_task(self._work(), name=f"batcher-{self.name}")

    async def _work(self) -> None:
        while True:
            self._drop_cancelled()
            if not self._waiting:
                return
            batch = await self._collect()
            if batch:
                await self._execute(batch)

    def _drop_cancelled(self) -> None:
        if any(r.future.done() for r in self._waiting):
            self._waiting = deque(r for r in self._waiting if not r.future.done())

    async def _collect(self) -> list[_Request[T, R]]:
        """Wait until the oldest request's batch is full or its wait is over, then take it."""
        assert self._wakeup is not None
        while True:
            self._drop_cancelled()
            if not self._waiting:
                return []
            batch = self._select()
            remaining = self._waiting[0].enqueued + self.max_wait - time.monotonic()
            if sum(len(r.items) for r in batch) >= self.max_batch or remaining <= 0:
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)
        chosen = {id(r) for r in batch}
        self._waiting = deque(r for r in self._waiting if id(r) not in chosen)
        return batch

    def _select(self) -> list[_Request[T, R]]:
        first = self._waiting[0]
        batch, size = [first], len(first.items)
        for request in list(self._waiting)[1:]:
            if size >= self.max_batch:
                break
            if request.key == first.key and size + len(request.items) <= self.max_batch:
                batch.append(request)
                size += len(request.items)
        return batch

    async def _execute(self, batch: list[_Request[T, R]]) -> None:
        assert self._loop is not None
        items = [item for request in batch for item in request.items]
        self.batch_sizes = [*self.batch_sizes[-999:], len(items)]
        try:
            if self._async_fn is not None:
                results = await self._async_fn(items)
            else:
                assert self._fn is not None
                results = await self._loop.run_in_executor(self._executor, self._fn, items)
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(items)} items")
        except Exception as exc:
            log.debug("batch of %d failed on %s", len(items), self.name, exc_info=True)
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        start = 0
        for request in batch:
            end = start + len(request.items)
            if not request.future.done():  # the caller may have given up meanwhile
                request.future.set_result(list(results[start:end]))
            start = end
