"""Sends a person's answer to a hand-off into the chat the question came from.

`switchboard handoffs answer ID TEXT` stores the answer; every replica running the hand-off's
platform polls for answers due, claims one (as `HandoffDesk` claims hand-offs), sends it through
that platform's responder, and only then marks it sent and adds it to the conversation. A send
that fails is retried with the desk's growing pauses, so an answer written while the bot is down
or the platform is unreachable still arrives, once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from bot.handoff_desk import CLAIM_LEASE, retry_pause
from handlers.types import Incoming, Reply, Responder
from storage import handoffs
from storage.db import SessionFactory, unit_of_work
from storage.handoffs import HandoffView

log = logging.getLogger(__name__)

ResponderFor = Callable[[Incoming], Responder]
QUOTED_CHARS = 80


def shown_answer(handoff: HandoffView) -> str:
    """What the user sees: who answered, which question, and the answer."""
    who = f"{handoff.answered_by} from the support team" if handoff.answered_by else "Support team"
    question = " ".join(handoff.question.split())
    if len(question) > QUOTED_CHARS:
        question = question[: QUOTED_CHARS - 1].rstrip() + "…"
    about = f" about “{question}”" if question else ""
    return f"🙋 {who}{about}:\n\n{handoff.answer or ''}"


def incoming_for(handoff: HandoffView) -> Incoming:
    """The chat (and thread) of the hand-off, as a platform's responder addresses it."""
    return Incoming(
        handoff.platform,
        f"handoff-answer:{handoff.id}",
        handoff.chat_id,
        handoff.user_id,
        "",
        thread_id=handoff.thread_id or None,
        user_name=handoff.user_name,
        is_private=handoff.chat_id == handoff.user_id,
    )


class AnswerCourier:
    """Sends due answers every ``poll_every`` seconds through ``responders`` (platform name to
    `responder_for`); answers to chats of other platforms are left to replicas running them."""

    def __init__(
        self,
        sessions: SessionFactory,
        responders: Mapping[str, ResponderFor],
        *,
        poll_every: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._responders = dict(responders)
        self._poll_every = poll_every

    async def run_forever(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except Exception:
                log.exception("sending hand-off answers failed")
            await asyncio.sleep(self._poll_every)

    async def deliver_due(self) -> int:
        """Send every answer that is due; returns how many reached their chat."""
        async with unit_of_work(self._sessions) as session:
            due = await handoffs.claim_answers(
                session, platforms=list(self._responders), lease=CLAIM_LEASE
            )
        sent = 0
        for handoff in due:
            shown = shown_answer(handoff)
            try:
                responder = self._responders[handoff.platform](incoming_for(handoff))
                await responder.send(Reply(text=shown))
            except Exception as exc:  # any platform failure: keep the answer, try again later
                attempts = handoff.answer_attempts + 1
                pause = retry_pause(attempts)
                async with unit_of_work(self._sessions) as session:
                    await handoffs.mark_answer_failed(
                        session,
                        handoff_id=handoff.id,
                        attempts=attempts,
                        error=type(exc).__name__,
                        retry_in=pause,
                    )
                log.warning(
                    "answer to hand-off %d not sent (%s); attempt %d, next in %.0f s",
                    handoff.id,
                    type(exc).__name__,
                    attempts,
                    pause.total_seconds(),
                )
                continue
            async with unit_of_work(self._sessions) as session:
                await handoffs.mark_answer_sent(session, handoff_id=handoff.id, shown=shown)
            log.info("answer to hand-off %d sent to %s", handoff.id, handoff.platform)
            sent += 1
        return sent
