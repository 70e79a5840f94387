"""`Dispatcher.dispatch(incoming, responder)`: the one entry point every platform calls."""

from __future__ import annotations

from collections.abc import Sequence

from handlers.middleware import Envelope, Middleware, Next
from handlers.types import Incoming, Responder


async def _end(envelope: Envelope) -> None:
    return None


class Dispatcher:
    """Runs an incoming message through the middleware chain, outermost first."""

    def __init__(self, middleware: Sequence[Middleware]) -> None:
        self._middleware = list(middleware)

    async def dispatch(self, incoming: Incoming, responder: Responder) -> None:
        await self._chain(0)(Envelope(incoming, responder))

    def _chain(self, index: int) -> Next:
        if index == len(self._middleware):
            return _end
        middleware, call_next = self._middleware[index], self._chain(index + 1)

        async def step(envelope: Envelope) -> None:
            await middleware(envelope, call_next)

        return step
