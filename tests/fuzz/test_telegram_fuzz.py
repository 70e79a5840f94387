"""Malformed and random Telegram updates, thrown at aiogram's validation plus the pure
translation, at the real webhook (with the real dispatcher and store behind it), and at long
polling. The process must never fail, nothing may be logged as an error, and nothing is
answered for an update that is invalid or not for the bot."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram.types import Update
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.compose import App
from bot.platforms.telegram import WEBHOOK_PATH, Limits
from bot.platforms.telegram.incoming import to_incoming, to_target
from tests.fakes.telegram_server import (
    BOT_ID,
    BOT_USERNAME,
    FakeTelegramServer,
    callback_update,
    message_update,
    user,
)
from tests.fuzz.conftest import ErrorTrap, watch_loop
from tests.fuzz.strategies import (
    MISSING,
    ints,
    json_values,
    mutated,
    nasty_text,
    payload,
    short_text,
    sometimes,
)
from tests.platforms.telegram_harness import SECRET, TelegramHarness

# Every outbound method that would show the user something.
ANSWERS = (
    "sendMessage",
    "sendPhoto",
    "sendMessageDraft",
    "editMessageText",
    "answerCallbackQuery",
    "sendChatAction",
)
# Telegram's pacing (20 messages a minute per group) would have hundreds of examples wait.
UNPACED = Limits(per_chat=None, per_group=None, overall=None, edits_per_chat=None)
SHARED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]

chat_types = st.one_of(st.sampled_from(["private", "group", "supergroup", "channel"]), short_text)
users = payload(
    {
        "id": st.one_of(ints, st.just(BOT_ID)),
        "is_bot": st.booleans(),
        "first_name": short_text,
        "last_name": sometimes(short_text),
        "username": sometimes(short_text),
        "language_code": sometimes(st.one_of(st.just("en"), short_text)),
    }
)
chats = payload({"id": ints, "type": chat_types, "title": sometimes(short_text)})
entities = st.lists(
    payload(
        {
            "type": st.one_of(
                st.sampled_from(["bot_command", "mention", "bold", "text_link", "pre", "url"]),
                short_text,
            ),
            # Offsets and lengths anywhere, not only inside the text.
            "offset": ints,
            "length": ints,
            "url": sometimes(short_text),
        }
    ),
    max_size=4,
)
texts = st.one_of(
    nasty_text,
    st.builds(
        lambda cmd, rest: f"/{cmd} {rest}",
        st.sampled_from(["start", "help", "gen", "reset", "forget", "stats", "image", "x"]),
        short_text,
    ),
    st.builds(lambda rest: f"@{BOT_USERNAME} {rest}", short_text),
    st.builds(lambda rest: f"/help@{BOT_USERNAME}{rest}", short_text),
)
sticker = payload(
    {
        "file_id": short_text,
        "file_unique_id": short_text,
        "type": st.just("regular"),
        "width": ints,
        "height": ints,
        "is_animated": st.booleans(),
        "is_video": st.booleans(),
    }
)


def _message(reply: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return payload(
        {
            "message_id": ints,
            "date": st.integers(min_value=0, max_value=2**31),
            "chat": chats,
            "from": sometimes(users),
            "text": sometimes(texts),
            "entities": sometimes(entities),
            "caption": sometimes(nasty_text),
            "sticker": sometimes(sticker),
            "message_thread_id": sometimes(ints),
            "is_topic_message": sometimes(st.booleans()),
            "reply_to_message": reply,
        }
    )


replied = _message(st.just(MISSING))
messages = _message(sometimes(replied))
callback_queries = payload(
    {
        "id": short_text,
        "from": users,
        "chat_instance": short_text,
        "data": sometimes(short_text),
        # A message older than 48 hours comes as an InaccessibleMessage with date 0.
        "message": sometimes(
            st.one_of(
                replied,
                st.builds(lambda c, i: {"chat": c, "message_id": i, "date": 0}, chats, ints),
            )
        ),
    }
)


@st.composite
def updates(draw: st.DrawFn) -> Any:
    """Update-shaped dicts, mostly; now and then any JSON document at all."""
    # Mostly the kinds the bot answers, so that the answering path is fuzzed too.
    kind = draw(
        st.sampled_from(
            ["message"] * 4 + ["callback_query"] * 2 + ["edited_message", "channel_post", "poll"]
        )
    )
    body = draw(callback_queries if kind == "callback_query" else messages)
    update: Any = draw(payload({"update_id": ints, kind: st.just(body)}))
    return draw(st.one_of(st.just(update), st.just(update), mutated(st.just(update)), json_values))


def _translate(raw: Any) -> tuple[Update | None, bool]:
    """(the validated update or None, whether the bot would answer it in any way)."""
    try:
        update = Update.model_validate(raw)
    except ValidationError:
        return None, False
    incoming = to_incoming(update, BOT_USERNAME, BOT_ID)
    target = to_target(update)
    return update, target is not None and (incoming is not None or bool(target.callback_id))


# Lone surrogates (legal JSON escapes) in a message and in a button press: found by this fuzzing.
SURROGATE_TEXT = {"update_id": 1, **message_update("hi \ud800", sender=user(first_name="\udc00"))}
SURROGATE_PRESS = callback_update("fb:up:1") | {"update_id": 2}
SURROGATE_PRESS["callback_query"]["id"] = "cb\ud800"


@settings(max_examples=1500, deadline=None, suppress_health_check=SHARED, database=None)
@given(raw=updates())
@example(raw=SURROGATE_TEXT)
@example(raw=SURROGATE_PRESS)
def test_validation_and_translation_never_raise(raw: Any) -> None:
    update, _ = _translate(raw)
    if update is None:
        return
    incoming = to_incoming(update, BOT_USERNAME, BOT_ID)
    if incoming is not None:
        assert incoming.event_id == str(update.update_id)
        assert isinstance(incoming.text, str) and isinstance(incoming.chat_id, str)
        # Stored and sent on as UTF-8: no lone surrogate survives the translation.
        json.dumps(incoming.text, ensure_ascii=False).encode()
        (incoming.user_name or "").encode()


@pytest.fixture
async def server() -> AsyncIterator[FakeTelegramServer]:
    fake = FakeTelegramServer()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def webhook(app: App, server: FakeTelegramServer) -> AsyncIterator[TelegramHarness]:
    harness = TelegramHarness(server, webhook=True, limits=UNPACED)
    await harness.start(app.dispatcher.dispatch, commands=app.router.commands)
    yield harness
    await harness.stop()


def _answers(server: FakeTelegramServer) -> int:
    return len(server.calls_to(*ANSWERS))


@settings(max_examples=1000, deadline=None, suppress_health_check=SHARED, database=None)
@given(raw=updates())
@example(raw=SURROGATE_TEXT)
@example(raw=SURROGATE_PRESS)
async def test_webhook_takes_any_update_without_error(
    webhook: TelegramHarness, server: FakeTelegramServer, trap: ErrorTrap, raw: Any
) -> None:
    watch_loop(trap)
    assert webhook.platform is not None
    before = _answers(server)
    raw = _fresh_id(raw)
    status = await webhook.post(raw)
    await webhook.platform.wait_idle()
    trap.check()
    update, answered = _translate(raw)
    assert status == (200 if update is not None else 400), ascii(raw)
    if not answered:
        assert _answers(server) == before, "answered garbage"


def _raw_utf8(text: str) -> bytes:
    # Surrogates too: a JSON body of invalid UTF-8.
    return text.encode("utf-8", "surrogatepass")


_fresh_ids = iter(range(10**6, 10**9))


def _fresh_id(raw: Any) -> Any:
    """Each example is a new delivery: the inbox rightly ignores an update id it has seen, so a
    replayed example (Hypothesis replays while shrinking) would behave differently."""
    if isinstance(raw, dict) and type(raw.get("update_id")) is int:
        return {**raw, "update_id": next(_fresh_ids)}
    return raw


@settings(max_examples=200, deadline=None, suppress_health_check=SHARED, database=None)
@given(body=st.one_of(st.binary(max_size=64), short_text.map(_raw_utf8)))
async def test_webhook_refuses_bytes_that_are_no_json(
    webhook: TelegramHarness, server: FakeTelegramServer, trap: ErrorTrap, body: bytes
) -> None:
    watch_loop(trap)
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(webhook.url + WEBHOOK_PATH, data=body, headers=headers) as response,
    ):
        status = response.status
    trap.check()
    try:
        Update.model_validate_json(body)
    except ValueError:
        assert status == 400
    assert not server.calls_to(*ANSWERS)


@pytest.fixture
async def polling(app: App, server: FakeTelegramServer) -> AsyncIterator[TelegramHarness]:
    harness = TelegramHarness(server, limits=UNPACED)
    await harness.start(app.dispatcher.dispatch, commands=app.router.commands)
    yield harness
    await harness.stop()


@settings(max_examples=120, deadline=None, suppress_health_check=SHARED, database=None)
@given(raw=st.lists(updates(), min_size=1, max_size=3))
@example(raw=[{"message": {"message_id": 1, "chat": "not a chat"}}])  # stopped the bot before
async def test_polling_steps_over_updates_it_cannot_read(
    polling: TelegramHarness, server: FakeTelegramServer, trap: ErrorTrap, raw: list[Any]
) -> None:
    """A Bot API server (a self-hosted one, a proxy) that returns an update aiogram cannot read
    must not stop the bot, nor hold back the updates behind it."""
    watch_loop(trap)
    assert polling.platform is not None
    # Telegram's update ids always increase (the fuzzed ones would not), and every update
    # has one: it is how a poller confirms what it took.
    batch = [{**u, "update_id": next(_fresh_ids)} for u in raw if isinstance(u, dict)]
    for update in batch:
        server.push_update(update)
    before = len(_sentinel_answers(server))
    # A well-formed update behind the batch is still taken and answered.
    await polling.deliver({"update_id": next(_fresh_ids), **_hello()})
    trap.check()
    assert len(_sentinel_answers(server)) > before


def _sentinel_answers(server: FakeTelegramServer) -> list[Any]:
    return [c for c in server.calls_to("sendMessage") if c.chat_id == SENTINEL]


SENTINEL = 777


def _hello() -> dict[str, Any]:
    chat = {"id": SENTINEL, "type": "private"}
    sender = {"id": SENTINEL, "is_bot": False, "first_name": "Sentinel"}
    return {"message": {"message_id": 1, "date": 0, "chat": chat, "from": sender, "text": "/help"}}
