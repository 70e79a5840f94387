"""/sentiment, and the sentiment of every chat turn, stored after the reply is sent."""

from __future__ import annotations

import asyncio
import logging

from handlers.context import Context
from handlers.middleware import USER_TURN, Envelope, Next
from handlers.router import Router
from services.container import Services
from services.types import UNREADABLE_LABEL, Sentiment
from storage import repositories as repo
from storage.db import SessionFactory, unit_of_work

log = logging.getLogger(__name__)

NOT_CONFIGURED = "Sentiment analysis is not configured on this bot."
UNREADABLE = "I can't tell the sentiment of text in this language (or of symbols alone)."
EMOJI = {"positive": "🙂", "negative": "🙁", "neutral": "😐"}
# Below this confidence a label is a lean, not a verdict, and is shown as one.
SURE = 0.65


def describe(sentiment: Sentiment) -> str:
    label = sentiment.label.lower()
    if label == UNREADABLE_LABEL:
        return UNREADABLE
    if label in ("positive", "negative") and sentiment.score < SURE:
        return f"{EMOJI['neutral']} **Unsure**, leaning {label} · confidence {sentiment.score:.0%}"
    text = f"**{label.capitalize()}** · confidence {sentiment.score:.0%}"
    return f"{EMOJI[label]} {text}" if label in EMOJI else text


def register(router: Router) -> None:
    @router.command(
        "sentiment",
        args="<text>",
        args_required=True,
        summary="tell whether a text sounds positive or negative, and how sure I am",
    )
    async def sentiment(ctx: Context, args: str) -> None:
        analyzer = ctx.services.sentiment
        if analyzer is None:
            await ctx.reply_text(NOT_CONFIGURED)
            return
        async with ctx.responder.typing():
            [result] = await analyzer.analyze([args])
        await ctx.reply_text(describe(result))


class TurnSentimentMiddleware:
    """Labels each stored user chat turn once the reply is out, off the reply path.

    The work runs as a background task that only logs its failures: a slow or broken sentiment
    model never delays or breaks a conversation.
    """

    def __init__(self, sessions: SessionFactory, services: Services) -> None:
        self._sessions = sessions
        self._services = services
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, envelope: Envelope, call_next: Next) -> None:
        try:
            await call_next(envelope)
        finally:
            conversation_id = envelope.notes.get(USER_TURN)
            text = envelope.incoming.text.strip()
            if conversation_id and text and self._services.sentiment is not None:
                task = asyncio.create_task(
                    self._label(int(conversation_id), envelope.incoming.event_id, text)
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _label(self, conversation_id: int, event_id: str, text: str) -> None:
        analyzer = self._services.sentiment
        assert analyzer is not None
        try:
            [result] = await analyzer.analyze([text])
            if result.label.lower() == UNREADABLE_LABEL:
                return  # nothing to count in /stats' mix
            async with unit_of_work(self._sessions) as session:
                await repo.set_sentiment(
                    session,
                    conversation_id=conversation_id,
                    event_id=event_id,
                    label=result.label,
                )
        except Exception as exc:
            log.warning("sentiment of event %s not stored: %r", event_id, exc)

    async def drain(self, *, within: float = 10.0) -> None:
        """Wait for labels still being computed (tests, and a clean shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=within)
