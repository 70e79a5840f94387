"""Middleware, one concern each, wrapped around the handler in `Dispatcher`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from handlers import admission
from handlers.context import Context
from handlers.metrics import EVENTS, LATENCY
from handlers.router import Route, Router
from handlers.types import Incoming, Reply, Responder
from services.container import Services
from services.types import ProviderError, Turn
from storage import inbox_order, turns
from storage import repositories as repo
from storage.db import SessionFactory, unit_of_work, used_database
from storage.group_commit import GroupCommit, Write
from storage.models import Conversation, User, utcnow

log = logging.getLogger(__name__)

# Envelope note: the conversation id of the stored user chat turn (found again by its event id)
# for work done after the reply.
USER_TURN = "user_turn"
# Set once the inbox row was marked done together with the answer's turns (one commit).
INBOX_DONE = "inbox_done"

SORRY = "Something went wrong on my side. Your message is saved; please try again."
# When even the inbox cannot take a message: it is not kept, so the user must send it again.
NOT_SAVED = "I could not save your message because of a problem on my side. Please send it again."
# Pauses between attempts to store an event, about 7.5 s in all: within the 10 s that a Telegram
# webhook waits before it must answer.
STORE_RETRIES = (0.5, 1.0, 2.0, 4.0)


class NotStored(Exception):
    """The inbox could not store an event, so nothing was answered and nothing kept. A
    platform whose server delivers the event again (a webhook answered with an error) lets it;
    the others tell the user with `NOT_SAVED` (`say_not_saved`)."""


async def say_not_saved(responder: Responder) -> None:
    """Tells the user that their message was lost and must be sent again, if that can reach them."""
    try:
        await responder.send(Reply(text=NOT_SAVED))
    except Exception:
        log.exception("could not tell the user that their message was not saved")


@dataclass(slots=True)
class Envelope:
    """One message on its way through the middleware."""

    incoming: Incoming
    responder: Responder
    duplicate: bool = False
    # Set when an abandoned inbox event is taken up again after a crash or restart.
    resumed: bool = False
    # Set by AccessMiddleware for users listed in ADMIN_USERS.
    is_admin: bool = False
    notes: dict[str, str] = field(default_factory=dict)


Next = Callable[[Envelope], Awaitable[None]]


class Middleware(Protocol):
    async def __call__(self, envelope: Envelope, call_next: Next) -> None: ...


class InboxMiddleware:
    """Stores the event before any work; an event id seen before is not answered again.

    While an event is worked on, its row gets a heartbeat, so another process (or this one
    after a restart) resumes only events whose worker died. A cancelled event (shutdown) stays
    pending and is resumed on the next start.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        commits: GroupCommit,
        *,
        heartbeat: float = 10.0,
        retries: tuple[float, ...] | None = None,
    ) -> None:
        self._sessions = sessions
        self._commits = commits
        self._heartbeat = heartbeat
        self._retries = retries  # None: STORE_RETRIES
        # Events in progress (a count: a resumed event may briefly run twice), and the one
        # task that keeps their heartbeats while any is left.
        self._working: dict[tuple[str, str], int] = {}
        self._beats: asyncio.Task[None] | None = None

    async def __call__(self, envelope: Envelope, call_next: Next) -> None:
        incoming = envelope.incoming
        if not envelope.resumed:
            fresh = await self._record(incoming)
            if not fresh:
                EVENTS.labels(incoming.platform, "duplicate").inc()
                envelope.duplicate = True
                log.info("duplicate event %s:%s ignored", incoming.platform, incoming.event_id)
                return
        key = (incoming.platform, incoming.event_id)
        self._working[key] = self._working.get(key, 0) + 1
        if self._beats is None or self._beats.done():
            self._beats = asyncio.create_task(self._beat())
        started = time.perf_counter()
        try:
            await call_next(envelope)
        except Exception as exc:
            EVENTS.labels(incoming.platform, "failed").inc()
            await self._mark(incoming, "failed", type(exc).__name__)
            raise
        else:
            EVENTS.labels(incoming.platform, "resumed" if envelope.resumed else "done").inc()
            LATENCY.labels(incoming.platform).observe(time.perf_counter() - started)
            if INBOX_DONE not in envelope.notes:
                await self._mark(incoming, "done", None)
        finally:
            left = self._working[key] - 1
            if left:
                self._working[key] = left
            else:
                del self._working[key]

    async def _record(self, incoming: Incoming) -> bool:
        """Stores the event (True) or finds it stored already (False); a failing database is
        tried again a few times (a locked SQLite file, a PostgreSQL fail-over), then `NotStored`."""
        event = f"{incoming.platform}:{incoming.event_id}"
        pauses = STORE_RETRIES if self._retries is None else self._retries
        for pause in (*pauses, None):
            try:
                return await self._commits.record_event(
                    platform=incoming.platform,
                    event_id=incoming.event_id,
                    payload=incoming.to_payload(),
                    conversation_key=inbox_order.conversation_key(*incoming.conversation_key),
                )
            except Exception as exc:
                if pause is None:
                    EVENTS.labels(incoming.platform, "not_stored").inc()
                    raise NotStored(f"event {event} could not be stored") from exc
                log.warning(
                    "could not store event %s (%s); trying again in %.1fs",
                    event,
                    type(exc).__name__,
                    pause,
                )
                await asyncio.sleep(pause)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _beat(self) -> None:
        """Every ``heartbeat`` seconds, one write touches all events in progress; ends when
        none is left (the next event starts it again)."""
        while self._working:
            await asyncio.sleep(self._heartbeat)
            beats = [turns.touch_event(platform=p, event_id=e) for p, e in self._working]
            try:
                await self._commits.commit(beats)
            except Exception:
                log.warning("inbox heartbeat of %d event(s) failed", len(beats), exc_info=True)

    async def _mark(self, incoming: Incoming, status: str, error: str | None) -> None:
        async with unit_of_work(self._sessions) as session:
            await repo.mark_event(
                session,
                platform=incoming.platform,
                event_id=incoming.event_id,
                status=status,
                error=error,
            )


class ErrorMiddleware:
    """Turns failures into one line the user can act on; the detail goes to the log."""

    async def __call__(self, envelope: Envelope, call_next: Next) -> None:
        event = f"{envelope.incoming.platform}:{envelope.incoming.event_id}"
        try:
            await call_next(envelope)
        except ProviderError as exc:
            log.warning("provider failed for event %s: %s", event, exc.detail)
            await self._apologise(envelope, exc.user_message)
        except Exception:
            log.exception("handler failed for event %s", event)
            await self._apologise(envelope, SORRY)

    @staticmethod
    async def _apologise(envelope: Envelope, text: str) -> None:
        try:
            await envelope.responder.send(Reply(text=text))
        except Exception:
            log.exception("could not deliver the apology for %s", envelope.incoming.event_id)


class OrderingMiddleware:
    """Messages of one conversation are handled one after another, in arrival order."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._users: dict[tuple[str, str, str], int] = {}

    async def __call__(self, envelope: Envelope, call_next: Next) -> None:
        key = envelope.incoming.conversation_key
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            # Nothing yields before the lock queues this task, and asyncio.Lock is FIFO, so a
            # later event let in now queues behind this one.
            admission.admit()
            async with lock:
                await call_next(envelope)
        finally:
            self._users[key] -= 1
            if self._users[key] == 0:
                del self._users[key]
                del self._locks[key]


class ConversationMiddleware:
    """Resolves user and conversation, keeps the user's turn, loads the context, runs the
    handler in a unit of work and stores what the bot said.

    The user's turn is committed before the handler runs, so a failing or slow model never
    loses it and no transaction stays open across a model call. A known user in a known
    conversation costs one read; the turns, the usage and the inbox's "done" mark are
    group-committed with other messages' (storage/turns.py). A handler that uses the database
    itself gets its bookkeeping in its own transaction instead, so its writes and the "done"
    mark still commit together.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        services: Services,
        router: Router,
        *,
        engine: AsyncEngine,
        commits: GroupCommit,
    ) -> None:
        self._sessions = sessions
        self._services = services
        self._router = router
        self._engine = engine
        self._commits = commits
        self._states = turns.States(engine)

    async def __call__(self, envelope: Envelope, call_next: Next) -> None:
        incoming = envelope.incoming
        route = self._router.route(incoming)
        accepted = await self._accept_known(envelope, route) or await self._accept(envelope, route)
        user, conversation, history = accepted
        ctx = Context(
            incoming=incoming,
            responder=envelope.responder,
            services=self._services,
            router=self._router,
            open_session=self._sessions,
            user=user,
            conversation=conversation,
            history=history,
            is_admin=envelope.is_admin,
        )
        try:
            if route.handler is None:
                # The router's own answers (unknown command, usage, expired button) concern only
                # the asker: private where the platform can show them so (a Slack ephemeral).
                await envelope.responder.send(Reply(text=route.answer, private=True))
                ctx.said.append(route.answer or "")
            else:
                # A handler that only talks to a model opens no session, so it holds no pooled
                # connection while the model answers: slow models cannot drain the pool.
                await route.handler(ctx, route.args)
            bookkeeping = self._bookkeeping(ctx, route)
            session = ctx.opened
            if session is not None and used_database(session):
                # The handler's own writes and the "done" mark commit together.
                connection = await session.connection()
                for write in bookkeeping:
                    await connection.execute(write.statement, write.params)
                await session.commit()
                bookkeeping = []
        finally:
            if ctx.opened is not None:
                await ctx.opened.close()
        await self._commits.commit(bookkeeping)
        envelope.notes[INBOX_DONE] = "1"
        await call_next(envelope)

    def _bookkeeping(self, ctx: Context, route: Route) -> list[Write]:
        """The inbox's "done" mark, the usage and what the bot said."""
        incoming = ctx.incoming
        writes = [
            turns.mark_event(platform=incoming.platform, event_id=incoming.event_id, status="done")
        ]
        if route.kind != "action":
            writes.append(
                turns.add_usage(
                    self._engine,
                    user_id=ctx.user.id,
                    day=utcnow().date(),
                    messages=1,
                    tokens=ctx.tokens,
                    images=ctx.images,
                )
            )
        kind = route.kind if route.kind != "action" else "command"
        writes += [
            turns.add_message(
                conversation=ctx.conversation,
                role="assistant",
                text=text,
                kind=kind,
                event_id=incoming.event_id,
            )
            for text in ctx.said
        ]
        return writes

    async def _accept_known(
        self, envelope: Envelope, route: Route
    ) -> tuple[User, Conversation, list[Turn]] | None:
        """The usual message: one read, and the user's turn group-committed."""
        incoming = envelope.incoming
        if envelope.resumed:
            return None  # its turn may be stored already: see `_accept`
        where = {
            "platform": incoming.platform,
            "external_id": incoming.user_id,
            "chat_id": incoming.chat_id,
            "thread_id": incoming.thread_id or "",
        }
        state = await self._states.load(**where)
        if state is None or (incoming.user_name and incoming.user_name != state.user.display_name):
            # A first message, or a new display name: create or update, then read again.
            await self._commits.commit(
                [
                    turns.ensure_user(
                        self._engine,
                        platform=incoming.platform,
                        external_id=incoming.user_id,
                        display_name=incoming.user_name,
                        language=incoming.language,
                    ),
                    turns.ensure_conversation(
                        self._engine,
                        platform=incoming.platform,
                        chat_id=incoming.chat_id,
                        thread_id=incoming.thread_id or "",
                    ),
                ]
            )
            state = await self._states.load(**where)
            if state is None:
                return None  # removed meanwhile (/forget): the repositories sort it out
        if route.kind != "action":
            await self._commits.commit(
                [
                    turns.add_message(
                        conversation=state.conversation,
                        role="user",
                        text=incoming.text,
                        kind=route.kind,
                        user_id=state.user.id,
                        event_id=incoming.event_id,
                    )
                ]
            )
            if route.kind == "chat" and route.handler is not None:
                envelope.notes[USER_TURN] = str(state.conversation.id)
        history = [
            Turn("assistant" if t.role == "assistant" else "user", t.text)
            for t in state.history
            if t.event_id != incoming.event_id
        ]
        return state.user, state.conversation, history if route.remember else []

    async def _accept(
        self, envelope: Envelope, route: Route
    ) -> tuple[User, Conversation, list[Turn]]:
        """Through the repositories: a resumed event (its user turn may be stored already), or a
        user removed (/forget) between `_accept_known`'s write and its read."""
        incoming = envelope.incoming
        async with unit_of_work(self._sessions) as session:
            user = await repo.get_or_create_user(
                session,
                platform=incoming.platform,
                external_id=incoming.user_id,
                display_name=incoming.user_name,
                language=incoming.language,
            )
            conversation = await repo.get_or_create_conversation(
                session,
                platform=incoming.platform,
                chat_id=incoming.chat_id,
                thread_id=incoming.thread_id or "",
            )
            history = (
                await self._history(session, conversation, skip_event=incoming.event_id)
                if route.remember
                else []
            )
            # A resumed event may have stored its user turn before the crash.
            kept = envelope.resumed and await repo.has_user_turn(
                session, conversation_id=conversation.id, event_id=incoming.event_id
            )
            if route.kind != "action" and not kept:
                await repo.add_message(
                    session,
                    conversation=conversation,
                    role="user",
                    text=incoming.text,
                    kind=route.kind,
                    user_id=user.id,
                    event_id=incoming.event_id,
                )
                if route.kind == "chat" and route.handler is not None:
                    envelope.notes[USER_TURN] = str(conversation.id)
        return user, conversation, history

    @staticmethod
    async def _history(
        session: AsyncSession, conversation: Conversation, *, skip_event: str
    ) -> list[Turn]:
        messages = await repo.context_messages(session, conversation=conversation)
        return [
            Turn("assistant" if m.role == "assistant" else "user", m.text)
            for m in messages
            if m.event_id != skip_event
        ]
