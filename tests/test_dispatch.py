"""The core path: commands, chat with stored history, /reset, dedupe, failures."""

from __future__ import annotations

import itertools
from pathlib import Path

from sqlalchemy import select

from bot.compose import App, build_app
from bot.migrate import upgrade_async
from bot.settings import Settings
from handlers.types import Incoming
from services.container import GenerationConfig, Services
from storage.db import unit_of_work
from storage.models import Feedback, InboxEvent, Message
from tests.fakes.responder import CollectingResponder
from tests.fakes.text import FakeTextGenerator

_ids = itertools.count(1)


def incoming(text: str, *, event_id: str | None = None, action: str | None = None) -> Incoming:
    return Incoming(
        platform="test",
        event_id=event_id or f"e{next(_ids)}",
        chat_id="chat-1",
        user_id="user-1",
        user_name="Ada",
        text=text,
        action=action,
    )


async def say(app: App, text: str, **kwargs: str) -> CollectingResponder:
    responder = CollectingResponder()
    await app.dispatcher.dispatch(incoming(text, **kwargs), responder)
    return responder


async def test_help_lists_every_command_with_usage(app: App) -> None:
    replies = await say(app, "/help")
    text = replies.texts[0]
    for command in app.router.commands:
        assert command.usage in text


async def test_unknown_command_and_missing_argument_get_usage(app: App) -> None:
    assert "Unknown command /nope" in (await say(app, "/nope")).texts[0]
    assert (await say(app, "/gen")).texts[0].startswith("Usage: `/gen <prompt>`")


async def test_any_space_ends_a_command_name_and_invisible_text_is_empty(
    app: App, fake_text: FakeTextGenerator
) -> None:
    # A tab, a no-break space, an ideographic space (CJK keyboards) after the name.
    for space in ("\t", "\u00a0", "\u3000", "\n"):
        await say(app, f"/gen{space}hello there")
        assert fake_text.calls[-1][-1].text == "hello there"
    calls = len(fake_text.calls)
    # Zero-width characters are not an argument, not part of a name, not a message.
    assert (await say(app, "/gen \u200b\u200d")).texts[0].startswith("Usage: `/gen <prompt>`")
    assert "/gen" in (await say(app, "/help\u200b")).texts[0]
    assert (await say(app, "\u200b\u200b\u200b")).texts == ["Try /help to see what I can do."]
    assert len(fake_text.calls) == calls


async def test_chat_sends_stored_history_and_reset_empties_it(
    app: App, fake_text: FakeTextGenerator
) -> None:
    await say(app, "My name is Ada.")
    await say(app, "What is my name?")
    second = [t.text for t in fake_text.calls[-1]]
    assert second[0] == "You are a test."
    assert "My name is Ada." in second
    assert second[-1] == "What is my name?"

    await say(app, "/reset")
    await say(app, "Who am I?")
    third = [t.text for t in fake_text.calls[-1]]
    assert third == ["You are a test.", "Who am I?"]


async def test_gen_is_one_shot(app: App, fake_text: FakeTextGenerator) -> None:
    await say(app, "Remember the word banana.")
    await say(app, "/gen Write a haiku.")
    assert [t.text for t in fake_text.calls[-1]] == ["You are a test.", "Write a haiku."]
    # /gen turns do not join the context of later chat turns.
    await say(app, "What word?")
    texts = [t.text for t in fake_text.calls[-1]]
    assert "Write a haiku." not in texts and "Remember the word banana." in texts


async def test_duplicate_event_is_answered_once(app: App, fake_text: FakeTextGenerator) -> None:
    first = await say(app, "hello", event_id="same")
    second = await say(app, "hello", event_id="same")
    assert first.texts and not second.replies
    assert len(fake_text.calls) == 1
    async with unit_of_work(app.sessions) as session:
        events = (await session.scalars(select(InboxEvent))).all()
        assert [(e.event_id, e.status) for e in events] == [("same", "done")]


async def test_provider_failure_apologises_and_keeps_the_message(
    app: App, fake_text: FakeTextGenerator
) -> None:
    fake_text.fail = True
    replies = await say(app, "Are you there?")
    assert replies.texts == ["The text service is unavailable right now, try again in a minute."]
    async with unit_of_work(app.sessions) as session:
        rows = (await session.scalars(select(Message))).all()
        assert [(m.role, m.text) for m in rows] == [("user", "Are you there?")]


async def test_answers_carry_feedback_buttons_that_store_votes(app: App) -> None:
    replies = await say(app, "hi", event_id="rated")
    buttons = replies.replies[-1].buttons
    assert [b.label for b in buttons] == ["👍", "👎"]
    notice = await say(app, "", action=buttons[0].data)
    assert notice.replies[0].private
    async with unit_of_work(app.sessions) as session:
        votes = (await session.scalars(select(Feedback))).all()
        assert [(v.event_id, v.score) for v in votes] == [("rated", 1)]


async def test_a_nul_character_is_dropped_so_the_message_is_kept_on_every_store(
    database_url: str, tmp_path: Path
) -> None:
    # Valid JSON ("\u0000", text pasted from a PDF) that PostgreSQL refuses in a text column.
    await upgrade_async(database_url)
    settings = Settings(data_dir=tmp_path, database_url=database_url, _env_file=None)  # type: ignore[call-arg]
    config = GenerationConfig(system_prompt="t", max_tokens=64, temperature=0)
    app = build_app(settings, services=Services(FakeTextGenerator(), config))
    try:
        responder = CollectingResponder()
        message = Incoming("slack", "Ev1", "D1", "U1", "pasted:\x00 what is this?")
        await app.dispatcher.dispatch(message, responder)
        assert responder.texts == ["Hello from the fake model."]
        async with unit_of_work(app.sessions) as session:
            turns = [(m.role, m.text) for m in await session.scalars(select(Message))]
        assert turns[0] == ("user", "pasted: what is this?")
    finally:
        await app.close()
