"""Per-conversation order across processes: the PostgreSQL sibling of `OrderingMiddleware`."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from handlers import admission
from handlers.middleware import Envelope, Next
from handlers.types import Incoming
from storage import inbox_order
from storage.db import SessionFactory, unit_of_work
from storage.models import utcnow

log = logging.getLogger(__name__)


class InboxOrderingMiddleware:
    """Messages of one conversation are handled one after another, in the order they reached
    the inbox, by however many processes share the database.

    An event waits while an earlier event of its conversation is still pending: the inbox is
    the conversation's queue, and "done" (committed together with the answer) hands over to
    the next one, whichever replica holds it. Storing an event takes a transaction-scoped
    advisory lock on its conversation, so inbox ids follow commit order (storage/inbox_order.py)
    and an update that raced ahead of its predecessor still waits for it. For "arrival order"
    to be the order a chat's updates were sent in, a platform acknowledges an update (and
    dispatches the chat's next one) only once it is admitted here (handlers/admission.py).

    Trade-offs. The obvious alternative, a session-level advisory lock held around the
    handling, pins a pooled connection per conversation in progress for as long as the model
    takes: a burst of slow answers would drain the pool, and each holder needs a second
    connection to store its answer, so a full pool deadlocks. Here no connection is held while
    waiting or answering; the price is polling (one indexed query per waiting event every
    ``poll``…``max_poll`` seconds) and up to ``max_poll`` of latency per hand-over.

    The wait is bounded. A predecessor whose heartbeat stopped for ``stale_after`` seconds
    (the inbox's resume threshold) lost its worker: it is resumed on its own, later (so it is
    answered after its successors), and does not hold up the others. A live one that takes
    longer than ``max_wait`` is overtaken with a warning rather than stalling the conversation.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        *,
        stale_after: float,
        max_wait: float = 300.0,
        poll: float = 0.02,
        max_poll: float = 0.2,
    ) -> None:
        self._sessions = sessions
        self._stale_after = stale_after
        self._max_wait = max_wait
        self._poll = poll
        self._max_poll = max_poll

    async def __call__(self, envelope: Envelope, call_next: Next) -> None:
        # The inbox id fixed this event's place when it was stored.
        admission.admit()
        await self._wait_for_turn(envelope.incoming)
        await call_next(envelope)

    async def _wait_for_turn(self, incoming: Incoming) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait
        delay = self._poll
        while await self._behind(incoming):
            if loop.time() >= deadline:
                log.warning(
                    "event %s:%s overtakes an earlier event of its conversation after %.0fs",
                    incoming.platform,
                    incoming.event_id,
                    self._max_wait,
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, self._max_poll)

    async def _behind(self, incoming: Incoming) -> bool:
        async with unit_of_work(self._sessions) as session:
            return await inbox_order.earlier_pending(
                session,
                platform=incoming.platform,
                event_id=incoming.event_id,
                key=inbox_order.conversation_key(*incoming.conversation_key),
                live_since=utcnow() - timedelta(seconds=self._stale_after),
            )
