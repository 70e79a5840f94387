"""/forget on SQLite and PostgreSQL: nothing with the user's words or name is left, neither in
the inbox nor in hand-offs and the answers sent for them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.compose import App, build_app
from bot.handoff_answers import AnswerCourier
from bot.migrate import upgrade_async
from bot.settings import Settings
from handlers.resume import resume_abandoned
from handlers.types import Incoming, Reply
from services.container import GenerationConfig, Services
from storage import handoffs
from storage import repositories as repo
from storage.db import unit_of_work
from storage.models import Handoff, InboxEvent, Message
from tests.fakes.responder import CollectingResponder
from tests.fakes.text import FakeTextGenerator

SECRET = "my passport number is X1234567"


@pytest.fixture
async def app(database_url: str, settings: Settings) -> AsyncIterator[App]:
    await upgrade_async(database_url)
    generation = GenerationConfig(system_prompt="test", max_tokens=64, temperature=0)
    stored = settings.model_copy(update={"database_url": database_url})
    built = build_app(stored, services=Services(FakeTextGenerator(), generation))
    yield built
    await built.close()


def said(
    text: str, *, event: str, user: str = "ann", chat: str = "c1", action: str | None = None
) -> Incoming:
    return Incoming(
        "test",
        event,
        chat,
        user,
        text,
        action=action,
        user_name=f"{user.title()} Secret",
        is_private=chat != "group",
    )


async def send(app: App, incoming: Incoming) -> list[str]:
    responder = CollectingResponder()
    await app.dispatcher.dispatch(incoming, responder)
    return responder.texts


async def forget(app: App, *, event: str = "f1", user: str = "ann", chat: str = "c1") -> None:
    done = await send(app, said("", event=event, user=user, chat=chat, action="forget:yes"))
    assert done == ["Done: everything stored about you is deleted."]


async def stored(app: App) -> str:
    """Every message, inbox payload and hand-off, as one text to search."""
    async with unit_of_work(app.sessions) as session:
        messages = [m.text for m in await session.scalars(select(Message))]
        inbox = [e.payload for e in await session.scalars(select(InboxEvent))]
        kept = [(h.question, h.transcript) for h in await session.scalars(select(Handoff))]
    return json.dumps([messages, inbox, kept], ensure_ascii=False)


async def test_the_inbox_keeps_no_words_or_name_but_still_drops_redeliveries(app: App) -> None:
    await send(app, said(SECRET, event="e1"))
    await send(app, said("/forget", event="e2"))
    await send(app, said("Bob's own words", event="e3", user="bob"))
    await forget(app)
    left = await stored(app)
    assert "X1234567" not in left and "Ann Secret" not in left and "/forget" not in left
    assert "Bob's own words" in left and "Bob Secret" in left
    # The event ids stay, so a platform delivering e1 again gets no second answer.
    assert await send(app, said(SECRET, event="e1")) == []
    assert "X1234567" not in await stored(app)


async def test_a_pending_event_keeps_its_payload_and_is_still_answered(app: App) -> None:
    # A worker died on e1: the event is pending, and resuming it needs what it said.
    abandoned = said("still waiting for an answer", event="e1")
    async with unit_of_work(app.sessions) as session:
        await repo.record_event(
            session, platform="test", event_id="e1", payload=abandoned.to_payload()
        )
    await send(app, said("hello", event="e2"))
    await forget(app)
    async with unit_of_work(app.sessions) as session:
        [pending] = await repo.pending_events(session)
    assert pending.payload == abandoned.to_payload()
    chat = CollectingResponder()
    resumed = await resume_abandoned(
        app.sessions, app.dispatcher, platform="test", responder_for=lambda _: chat, idle_for=0
    )
    assert resumed == 1 and chat.texts


async def answer_all(app: App) -> None:
    async with unit_of_work(app.sessions) as session:
        for handoff in await handoffs.list_handoffs(session):
            await handoffs.answer_handoff(session, handoff_id=handoff.id, text="Yes.", by="Maria")


async def test_handoffs_and_their_sent_answers_go(app: App) -> None:
    await send(app, said("Can I return what I bought with passport X1234567?", event="e1"))
    await send(app, said("", event="b1", action="handoff:e1"))
    await answer_all(app)
    assert await AnswerCourier(
        app.sessions, {"test": lambda _: CollectingResponder()}
    ).deliver_due()
    assert "X1234567" in await stored(app)
    await forget(app)
    assert "X1234567" not in await stored(app)


async def test_group_handoffs_of_the_user_go_and_other_members_stay(app: App) -> None:
    await send(app, said("Is X1234567 a valid passport?", event="e1", chat="group"))
    await send(app, said("When do you open?", event="e2", user="bob", chat="group"))
    await send(app, said("", event="b1", chat="group", action="handoff:e1"))
    await send(app, said("", event="b2", user="bob", chat="group", action="handoff:e2"))
    await answer_all(app)
    assert await AnswerCourier(
        app.sessions, {"test": lambda _: CollectingResponder()}
    ).deliver_due()
    await forget(app, chat="group")
    left = await stored(app)
    assert "X1234567" not in left
    async with unit_of_work(app.sessions) as session:
        assert [h.question for h in await handoffs.list_handoffs(session, include_closed=True)] == [
            "When do you open?"
        ]


async def test_an_answer_on_its_way_during_forget_is_not_stored(app: App) -> None:
    await send(app, said("Can I pay with passport X1234567?", event="e1"))
    await send(app, said("", event="b1", action="handoff:e1"))
    await answer_all(app)

    class Chat(CollectingResponder):
        async def send(self, reply: Reply) -> None:
            await super().send(reply)
            await forget(app)  # pressed while the answer was being sent

    assert await AnswerCourier(app.sessions, {"test": lambda _: Chat()}).deliver_due() == 1
    assert "X1234567" not in await stored(app)
