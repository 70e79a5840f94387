"""`Dispatcher.dispatch(incoming, responder)`: the one entry point every platform calls."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from handlers.middleware import Envelope, Middleware, Next
from handlers.types import Incoming, Responder


async def _end(envelope: Envelope) -> None:
    return None


class Dispatcher:
    """Runs an incoming message through the middleware chain, outermost first, and keeps
    track of the messages in flight so a shutdown can finish or re-queue them."""

    def __init__(self, middleware: Sequence[Middleware]) -> None:
        self._middleware = list(middleware)
        self._in_flight: set[asyncio.Task[object]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def dispatch(
        self, incoming: Incoming, responder: Responder, *, resumed: bool = False
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            await self._chain(0)(Envelope(incoming, responder, resumed=resumed))
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def drain(self, *, grace: float) -> int:
        """Wait up to ``grace`` seconds for messages in flight, then cancel the rest.

        A cancelled message stays pending in the inbox and is answered after the restart.
        Returns how many had to be cancelled.
        """
        current = asyncio.current_task()
        pending = {t for t in self._in_flight if t is not current}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)

    def _chain(self, index: int) -> Next:
        if index == len(self._middleware):
            return _end
        middleware, call_next = self._middleware[index], self._chain(index + 1)

        async def step(envelope: Envelope) -> None:
            await middleware(envelope, call_next)

        return step
