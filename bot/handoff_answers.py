"""Sends a person's answer to a hand-off into the chat the question came from.

`switchboard handoffs answer ID TEXT`, or a help desk's POST /handoffs/{id}/answer (with
HANDOFF_ANSWER_TOKEN), stores the answer (`record_answer`); every replica running the hand-off's
platform polls for answers due, claims one (as `HandoffDesk` claims hand-offs), sends it through
that platform's responder, and only then marks it sent and adds it to the conversation. A send
that fails is retried with the desk's growing pauses, so an answer written while the bot is down
or the platform is unreachable still arrives, once.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Mapping
from enum import Enum

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.handoff_desk import CLAIM_LEASE, poll_forever, retry_pause
from handlers.types import Incoming, Reply, Responder
from storage import handoffs
from storage.db import SessionFactory, unit_of_work
from storage.handoffs import HandoffView

log = logging.getLogger(__name__)

ResponderFor = Callable[[Incoming], Responder]
QUOTED_CHARS = 80
ANSWER_CHARS = 4000
NAME_CHARS = 128
# Platforms whose chats the bot can write to later, unprompted (a console session cannot be).
ANSWERABLE = ("telegram", "slack")


class Outcome(Enum):
    """What became of an answer given to `record_answer`, with the HTTP status a desk gets."""

    QUEUED = 202
    EMPTY = 400
    MISSING = 404
    ANSWERED = 409  # it has an answer already
    UNREACHABLE = 422  # its chat cannot be written to later


async def record_answer(
    session: AsyncSession, handoff_id: int, text: str, *, by: str | None
) -> tuple[Outcome, HandoffView | None]:
    """Store a person's answer for the courier to send, if the hand-off can take one."""
    found = await handoffs.get_handoff(session, handoff_id=handoff_id)
    if found is None:
        return Outcome.MISSING, None
    if not text.strip() or len(text) > ANSWER_CHARS or len(by or "") > NAME_CHARS:
        return Outcome.EMPTY, found
    if found.platform not in ANSWERABLE:
        return Outcome.UNREACHABLE, found
    if not await handoffs.answer_handoff(session, handoff_id=handoff_id, text=text, by=by):
        return Outcome.ANSWERED, found
    return Outcome.QUEUED, found


def answer_routes(sessions: SessionFactory, token: str) -> list[BaseRoute]:
    """POST /handoffs/{id}/answer for a help desk: ``Authorization: Bearer <token>`` and JSON
    ``{"text": ..., "by": ...}``; 202 once the answer is stored."""
    expected = f"Bearer {token}".encode()

    async def answer(request: Request) -> Response:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        text = body.get("text") if isinstance(body, dict) else None
        by = body.get("by") if isinstance(body, dict) else None
        if not isinstance(text, str) or not (by is None or isinstance(by, str)):
            return JSONResponse(
                {"error": 'expected JSON {"text": "the answer", "by": "optional name"}'},
                status_code=400,
            )
        handoff_id = request.path_params["handoff_id"]
        async with unit_of_work(sessions) as session:
            outcome, _ = await record_answer(session, handoff_id, text, by=by)
        if outcome is Outcome.QUEUED:
            log.info("answer to hand-off %d stored (desk)", handoff_id)
            return JSONResponse({"id": handoff_id, "status": "queued"}, status_code=202)
        return JSONResponse({"error": ERRORS[outcome]}, status_code=outcome.value)

    return [Route("/handoffs/{handoff_id:int}/answer", answer, methods=["POST"])]


ERRORS = {
    Outcome.EMPTY: f"the answer must be 1 to {ANSWER_CHARS} characters, the name at most "
    f"{NAME_CHARS}",
    Outcome.MISSING: "no such hand-off",
    Outcome.ANSWERED: "this hand-off has an answer already",
    Outcome.UNREACHABLE: "this hand-off came from a chat the bot cannot write to later",
}


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
        handoffs.answer_event_id(handoff.id),
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
        await poll_forever(
            self.deliver_due, every=self._poll_every, what="sending hand-off answers"
        )

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
