"""Resuming abandoned inbox events: what a killed process was working on is answered after all.

Every event is stored before any work and carries a heartbeat while it is worked on, so a
pending event whose heartbeat stopped belongs to a dead worker. Any process may claim it (only
one wins the claim) and runs it through the normal path again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from handlers.dispatcher import Dispatcher
from handlers.types import Incoming, Reply, Responder
from storage import repositories as repo
from storage.db import SessionFactory, unit_of_work
from storage.models import utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


def incoming_from_payload(payload: dict[str, Any]) -> Incoming:
    fields = dict(payload)
    fields["attachments"] = tuple(fields.get("attachments") or ())
    return Incoming(**fields)


async def resume_abandoned(
    sessions: SessionFactory,
    dispatcher: Dispatcher,
    *,
    platform: str,
    responder_for: Callable[[Incoming], Responder],
    idle_for: float,
) -> int:
    """Re-dispatch this platform's pending events idle for ``idle_for`` seconds; returns count."""
    idle_since = utcnow() - timedelta(seconds=idle_for)
    async with unit_of_work(sessions) as session:
        events = [
            (e.event_id, e.attempts, e.payload)
            for e in await repo.pending_events(session, platform=platform, idle_since=idle_since)
        ]
    resumed = 0
    for event_id, attempts, payload in events:
        async with unit_of_work(sessions) as session:
            won = await repo.claim_event(
                session, platform=platform, event_id=event_id, idle_since=idle_since
            )
            if won and attempts >= MAX_ATTEMPTS:
                # An event that killed its worker several times would kill the next one too.
                await repo.mark_event(
                    session, platform=platform, event_id=event_id, status="failed", error="attempts"
                )
                log.error("event %s:%s gave up after %d attempts", platform, event_id, attempts)
        if not won:
            continue
        incoming = incoming_from_payload(payload)
        if attempts >= MAX_ATTEMPTS:
            await _give_up(responder_for(incoming), incoming)
            continue
        log.info("resuming event %s:%s (attempt %d)", platform, event_id, attempts + 1)
        await dispatcher.dispatch(incoming, responder_for(incoming), resumed=True)
        resumed += 1
    return resumed


GAVE_UP = "Sorry, I could not answer your message “{quote}”: please send it again in other words."
GAVE_UP_PRESS = "Sorry, I could not act on that button press: please try again."


async def _give_up(responder: Responder, incoming: Incoming) -> None:
    """The user hears that the message will not be answered, rather than wait for ever."""
    quote = incoming.text if len(incoming.text) <= 60 else incoming.text[:59].rstrip() + "…"
    text = GAVE_UP.format(quote=quote) if quote else GAVE_UP_PRESS
    try:
        await responder.send(Reply(text=text))
    except Exception:
        log.exception("could not tell %s:%s that it gave up", incoming.platform, incoming.event_id)
