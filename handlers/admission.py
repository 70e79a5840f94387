"""When a dispatched event has its place in its conversation's order.

A platform that handles events in background tasks learns through this when an event is stored
in the inbox and queued behind the earlier events of its conversation. From then on the
conversation's next event cannot overtake it, in this process or any other sharing the
database: the platform may acknowledge the event (a webhook's 200 then means "stored") and
dispatch the next one. Before, it must hold the next one back.

A context variable rather than a parameter of `Dispatch`, so that platforms which do not ask,
and dispatch functions other than the Dispatcher (test fakes, benchmarks), are unaffected.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

_admitted: ContextVar[asyncio.Event | None] = ContextVar("switchboard_admitted", default=None)


def watch(admitted: asyncio.Event) -> None:
    """Ask, from the task that is about to dispatch, for ``admitted`` to be set on admission."""
    _admitted.set(admitted)


def admit() -> None:
    """The ordering middleware's signal: this task's event now holds its place."""
    admitted = _admitted.get()
    if admitted is not None:
        admitted.set()
