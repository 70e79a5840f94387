"""Delivers hand-offs to the support desk: one JSON POST per hand-off to HANDOFF_WEBHOOK_URL,
retried with growing pauses until the desk takes it (any 2xx).

The body works as it is with chat incoming webhooks (Slack, Mattermost, Rocket.Chat read
``text``) and gives a help desk the fields it needs (``handoff``). ``handoff.id`` is the same on
every retry, so a desk that saw a request whose answer was lost can drop the repeat.
The URL often holds a token, so it is never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import aiohttp

from bot.platforms.slack_render import escape
from storage import handoffs
from storage.db import SessionFactory, unit_of_work
from storage.handoffs import HandoffView

log = logging.getLogger(__name__)

FIRST_RETRY = 10.0  # seconds; doubled after each failure
LONGEST_RETRY = 3600.0
# A claimed hand-off is left to its replica this long; one that died is retried after it.
CLAIM_LEASE = timedelta(minutes=5)  # longer than 20 sends that time out
QUESTION_CHARS = 500
# Filled in later, when a person answers (bot/handoff_answers.py); not the desk's business.
ANSWER_FIELDS = (
    "answer",
    "answered_by",
    "answer_attempts",
    "answer_sent_at",
    "answer_error",
    "answer_due_at",
)


async def poll_forever(step: Callable[[], Awaitable[object]], *, every: float, what: str) -> None:
    """Run ``step`` every ``every`` seconds until cancelled; a failure is logged, not fatal."""
    while True:
        try:
            await step()
        except Exception:
            log.exception("%s failed", what)
        await asyncio.sleep(every)


def retry_pause(attempts: int) -> timedelta:
    return timedelta(seconds=min(LONGEST_RETRY, FIRST_RETRY * 2 ** max(0, attempts - 1)))


def webhook_body(handoff: HandoffView) -> dict[str, Any]:
    where = f"{handoff.platform} chat {handoff.chat_id}"
    if handoff.thread_id:
        where += f", thread {handoff.thread_id}"
    who = handoff.user_name or handoff.user_id
    question = handoff.question[:QUESTION_CHARS] or "(the question is no longer stored)"
    fields = asdict(handoff)
    for name in ("created_at", "delivered_at", "closed_at"):
        fields[name] = fields[name].isoformat() if fields[name] is not None else None
    for name in ("attempts", "delivered_at", "error", *ANSWER_FIELDS):
        del fields[name]
    # Chat webhooks read <!channel>, <@U…> and <url|label> in ``text`` as pings and links: a
    # user's question or name must not ping or phish the desk's channel. ``handoff`` stays raw.
    text = f"🙋 Hand-off #{handoff.id} from {who} ({where}):\n> {question}"
    return {"text": escape(text), "handoff": fields}


class HandoffDesk:
    """Sends due hand-offs every ``poll_every`` seconds; several replicas may run one each
    (each hand-off is claimed by one of them before it is sent)."""

    def __init__(
        self,
        sessions: SessionFactory,
        url: str,
        *,
        timeout: float = 10.0,
        poll_every: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._poll_every = poll_every

    async def run_forever(self) -> None:
        async with aiohttp.ClientSession(timeout=self._timeout) as http:
            await poll_forever(
                lambda: self.deliver_due(http), every=self._poll_every, what="delivering hand-offs"
            )

    async def deliver_due(self, http: aiohttp.ClientSession) -> int:
        """Send every hand-off that is due; returns how many the desk took."""
        async with unit_of_work(self._sessions) as session:
            due = await handoffs.claim_due(session, lease=CLAIM_LEASE)
        taken = 0
        for handoff in due:
            error = await self._post(http, handoff)
            async with unit_of_work(self._sessions) as session:
                if error is None:
                    await handoffs.mark_delivered(session, handoff_id=handoff.id)
                    log.info("hand-off %d delivered to the support desk", handoff.id)
                    taken += 1
                    continue
                attempts = handoff.attempts + 1
                pause = retry_pause(attempts)
                await handoffs.mark_failed(
                    session, handoff_id=handoff.id, attempts=attempts, error=error, retry_in=pause
                )
            log.warning(
                "hand-off %d not delivered (%s); attempt %d, next in %.0f s",
                handoff.id,
                error,
                attempts,
                pause.total_seconds(),
            )
        return taken

    async def _post(self, http: aiohttp.ClientSession, handoff: HandoffView) -> str | None:
        """None when the desk took it, else why not (never the URL: it may hold a token)."""
        try:
            async with http.post(self._url, json=webhook_body(handoff)) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__
