"""The Telegram adapter end to end: the real aiogram client against the fake Bot API server,
the real dispatcher and a migrated SQLite store, with a scripted text model."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import select

from bot.cli import _settings_errors
from bot.compose import App, ConfigurationError
from bot.handoff_answers import AnswerCourier
from bot.platforms.telegram import TelegramConfig, TelegramPlatform
from bot.platforms.telegram.render import utf16_len
from bot.runner import HasRoutes, Resumable, configured_platforms, run_platforms
from bot.settings import Settings
from handlers.context import Context
from handlers.types import Incoming, Reply
from services.types import Turn
from storage import handoffs
from storage.db import unit_of_work
from storage.models import Feedback, Message
from tests.fakes.responder import CollectingResponder
from tests.fakes.telegram_server import (
    BOT_ID,
    BOT_USERNAME,
    TOKEN,
    Call,
    FakeTelegramServer,
    callback_update,
    message_update,
    visible_text,
)
from tests.fakes.text import BreaksOff, FakeTextGenerator
from tests.platforms.telegram_harness import SECRET, WEBHOOK_URL, TelegramHarness

GROUP = -100777
ANSWER = "Hello from the fake model."


class SlowText(FakeTextGenerator):
    """Streams its answer a word at a time, slowly enough for previews to show."""

    async def stream(
        self, turns: Sequence[Turn], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        self.calls.append(list(turns))
        for word in self.answer.split(" "):
            await asyncio.sleep(0.03)
            yield word + " "


@pytest.fixture
async def server() -> AsyncIterator[FakeTelegramServer]:
    fake = FakeTelegramServer()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def polling(app: App, server: FakeTelegramServer) -> AsyncIterator[TelegramHarness]:
    harness = TelegramHarness(server)
    await harness.start(app.dispatcher.dispatch, commands=app.router.commands)
    yield harness
    await harness.stop()


@pytest.fixture
async def webhook(app: App, server: FakeTelegramServer) -> AsyncIterator[TelegramHarness]:
    harness = TelegramHarness(server, webhook=True)
    await harness.start(app.dispatcher.dispatch, commands=app.router.commands)
    yield harness
    await harness.stop()


def sent_texts(server: FakeTelegramServer, chat_id: int | None = None) -> list[str]:
    """What the user sees: the visible text of every message sent (not drafts or edits)."""
    calls = [c for c in server.calls_to("sendMessage") if chat_id is None or c.chat_id == chat_id]
    return [_visible(c) for c in calls]


def _visible(call: Call) -> str:
    text = str(call.params.get("text") or call.params.get("caption") or "")
    return visible_text(text) if call.params.get("parse_mode") == "HTML" else text


def _buttons(call: Call) -> list[str]:
    markup = call.params.get("reply_markup") or {}
    return [b["text"] for row in markup.get("inline_keyboard", []) for b in row]


async def test_start_up_sets_the_command_menu_from_the_router(
    polling: TelegramHarness, server: FakeTelegramServer, app: App
) -> None:
    [menu] = server.calls_to("setMyCommands")
    names = [c["command"] for c in menu.params["commands"]]
    assert names == [c.name for c in app.router.commands]
    assert server.calls_to("deleteWebhook") and server.calls_to("getMe")


async def test_private_chat_answers_with_feedback_buttons_that_store_votes(
    polling: TelegramHarness, server: FakeTelegramServer, app: App
) -> None:
    update = await polling.deliver(message_update("hello there"))
    [answer] = server.calls_to("sendMessage")
    assert _visible(answer) == ANSWER
    assert _buttons(answer) == ["👍", "👎"]
    assert "reply_parameters" not in answer.params  # no quoting in a private chat
    assert server.calls_to("sendChatAction")[0].params["action"] == "typing"

    data = answer.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    assert data == f"fb:up:{update['update_id']}"
    await polling.deliver(callback_update(data))
    [notice] = server.calls_to("answerCallbackQuery")
    assert notice.params["text"] == "Thanks for the feedback!"
    async with unit_of_work(app.sessions) as session:
        votes = (await session.scalars(select(Feedback))).all()
        assert [(v.event_id, v.score) for v in votes] == [(str(update["update_id"]), 1)]


@pytest.mark.parametrize("chat_id", [100, GROUP], ids=["private", "group"])
async def test_every_command_works(
    polling: TelegramHarness, server: FakeTelegramServer, chat_id: int
) -> None:
    for text in ("/start", "/help", "/gen a haiku", "/reset", "/nope"):
        await polling.deliver(message_update(text, chat_id=chat_id))
    texts = sent_texts(server)
    assert texts[0].startswith("Hi, Ada!")
    assert "/gen <prompt>" in texts[1]
    assert texts[2] == ANSWER
    assert texts[3].startswith("Done")
    assert texts[4] == "Unknown command /nope. Try /help."


async def test_group_answers_only_commands_mentions_and_replies(
    polling: TelegramHarness, server: FakeTelegramServer, fake_text: FakeTextGenerator
) -> None:
    await polling.deliver(message_update("chatting among ourselves", chat_id=GROUP))
    await polling.deliver(message_update("/help@some_other_bot", chat_id=GROUP))
    assert not server.calls_to("sendMessage")

    await polling.deliver(
        message_update(f"@{BOT_USERNAME} what is up?", chat_id=GROUP, message_id=31)
    )
    [answer] = server.calls_to("sendMessage")
    assert fake_text.calls[-1][-1] == Turn("user", "what is up?")
    assert answer.params["reply_parameters"]["message_id"] == 31

    bot_message = {
        "message_id": 90,
        "date": 0,
        "chat": {"id": GROUP, "type": "supergroup"},
        "from": {"id": BOT_ID, "is_bot": True, "first_name": "Switchboard"},
        "text": ANSWER,
    }
    await polling.deliver(message_update("and then?", chat_id=GROUP, reply_to_message=bot_message))
    await polling.deliver(message_update(f"/help@{BOT_USERNAME}", chat_id=GROUP))
    texts = sent_texts(server, GROUP)
    assert texts[1] == ANSWER and "**" not in texts[2] and "/gen <prompt>" in texts[2]


async def test_forum_topic_is_its_own_conversation(
    polling: TelegramHarness, server: FakeTelegramServer, fake_text: FakeTextGenerator
) -> None:
    topic: dict[str, Any] = {"message_thread_id": 12, "is_topic_message": True}
    await polling.deliver(message_update("/help", chat_id=GROUP, **topic))
    assert server.calls_to("sendMessage")[0].params["message_thread_id"] == 12
    await polling.deliver(message_update(f"@{BOT_USERNAME} remember tea", chat_id=GROUP, **topic))
    await polling.deliver(message_update(f"@{BOT_USERNAME} and coffee?", chat_id=GROUP))
    # The message outside the topic does not see the topic's history.
    assert [t.text for t in fake_text.calls[-1]] == ["You are a test.", "and coffee?"]


async def test_a_persons_answer_to_a_handoff_reaches_the_topic_it_came_from(
    app: App, polling: TelegramHarness, server: FakeTelegramServer
) -> None:
    asked = Incoming(
        "telegram", "u1", str(GROUP), "7", "Do you ship to Mars?", thread_id="12", is_private=False
    )
    await app.dispatcher.dispatch(asked, CollectingResponder())
    pressed = Incoming("telegram", "u2", str(GROUP), "7", "", thread_id="12", action="handoff:u1")
    await app.dispatcher.dispatch(pressed, CollectingResponder())
    async with unit_of_work(app.sessions) as session:
        [handoff] = await handoffs.list_handoffs(session)
        await handoffs.answer_handoff(session, handoff_id=handoff.id, text="Not yet!", by="Maria")
    assert polling.platform is not None
    courier = AnswerCourier(app.sessions, {"telegram": polling.platform.responder_for})
    assert await courier.deliver_due() == 1
    [call] = [c for c in server.calls_to("sendMessage") if "Not yet!" in _visible(c)]
    assert (call.chat_id, call.params["message_thread_id"]) == (GROUP, 12)
    assert _visible(call).startswith("🙋 Maria from the support team about “Do you ship to Mars?”")
    assert await courier.deliver_due() == 0


async def test_reply_over_4096_characters_with_a_code_block(
    polling: TelegramHarness, server: FakeTelegramServer, fake_text: FakeTextGenerator
) -> None:
    code = "\n".join(f"total += item_{i}  # ünïcødé 😀" for i in range(220))
    fake_text.answer = f"Here is the code:\n\n```python\n{code}\n```\n\nAnd **that** is all."
    await polling.deliver(message_update("write me code"))
    calls = server.calls_to("sendMessage")
    assert len(calls) >= 2
    assert all(utf16_len(_visible(c)) <= 4096 for c in calls)
    code_calls = [c for c in calls if "<pre>" in c.params["text"]]
    assert len(code_calls) >= 2  # the block was closed and reopened across messages
    assert [bool(_buttons(c)) for c in calls] == [False] * (len(calls) - 1) + [True]
    shown = "\n".join(_visible(c) for c in calls)
    assert all(f"total += item_{i}" in shown for i in range(220))


async def test_image_reply_with_a_long_caption(
    app: App, polling: TelegramHarness, server: FakeTelegramServer
) -> None:
    caption = "A very *detailed* caption sentence. " * 50  # about 1,800 characters

    @app.router.command("picture", summary="test only: an image with a long caption")
    async def picture(ctx: Context, args: str) -> None:
        await ctx.reply(Reply(text=caption, image=b"\x89PNG fake image bytes"))

    await polling.deliver(message_update("/picture"))
    [photo] = server.calls_to("sendPhoto")
    assert photo.files["photo"] == b"\x89PNG fake image bytes"
    assert utf16_len(_visible(photo)) <= 1024
    [rest] = server.calls_to("sendMessage")
    assert (_visible(photo) + " " + _visible(rest)).split() == caption.replace("*", "").split()
    assert server.calls_to("sendChatAction")[-1].params["action"] == "upload_photo"


async def test_rejected_html_is_sent_again_as_plain_text(
    polling: TelegramHarness, server: FakeTelegramServer
) -> None:
    server.reject_entities = True
    await polling.deliver(message_update("/help"))
    rejected, plain = server.calls_to("sendMessage")
    assert rejected.params["parse_mode"] == "HTML"
    assert "parse_mode" not in plain.params
    assert plain.params["text"] == visible_text(rejected.params["text"])


async def test_429_waits_retry_after_and_delivers(
    polling: TelegramHarness, server: FakeTelegramServer
) -> None:
    server.rate_limit_next("sendMessage", retry_after=1)
    await polling.deliver(message_update("/start"))
    refused, delivered = server.calls_to("sendMessage")
    assert refused.params["text"] == delivered.params["text"]
    assert delivered.at - refused.at >= 0.9


async def test_a_polling_conflict_is_waited_out(
    polling: TelegramHarness, server: FakeTelegramServer
) -> None:
    # Telegram's 409 while another process still polls (a rolling deploy): not a reason to stop.
    conflict = "Conflict: terminated by other getUpdates request"
    server.fail_next("getUpdates", 409, conflict)
    await server.wait_until(lambda: len(server.calls_to("getUpdates")) >= 2)
    await polling.deliver(message_update("/start"))
    assert len(server.calls_to("sendMessage")) == 1


async def test_duplicated_update_is_answered_once(
    polling: TelegramHarness, server: FakeTelegramServer, fake_text: FakeTextGenerator
) -> None:
    update = await polling.deliver(message_update("only once"))
    await polling.deliver(update)  # Telegram redelivers with the same update_id
    assert len(server.calls_to("sendMessage")) == 1
    assert len(fake_text.calls) == 1


async def test_webhook_checks_the_secret_and_answers_once(
    webhook: TelegramHarness, server: FakeTelegramServer, fake_text: FakeTextGenerator
) -> None:
    [registration] = server.calls_to("setWebhook")
    assert registration.params["url"] == WEBHOOK_URL
    assert registration.params["secret_token"] == SECRET

    update = {"update_id": 5001, **message_update("hi over the webhook")}
    assert await webhook.post(update, secret=None) == 401
    assert await webhook.post(update, secret="wrong") == 401
    await webhook.deliver(update)
    await webhook.deliver(update)  # a webhook retry
    assert sent_texts(server) == [ANSWER]
    assert len(fake_text.calls) == 1


STREAMED = "one two three four five six seven eight nine ten"


@pytest.mark.parametrize("fake_text", [SlowText(answer=STREAMED)])
async def test_streaming_in_a_private_chat_uses_drafts(
    polling: TelegramHarness, server: FakeTelegramServer, fake_text: SlowText
) -> None:
    slow = fake_text
    await polling.deliver(message_update("stream please"))
    drafts = server.calls_to("sendMessageDraft")
    assert drafts and len({d.params["draft_id"] for d in drafts}) == 1
    assert all(slow.answer.startswith(_visible(d)) for d in drafts)
    [final] = server.calls_to("sendMessage")
    assert _visible(final) == slow.answer and _buttons(final) == ["👍", "👎"]
    assert not server.calls_to("editMessageText")


@pytest.mark.parametrize("fake_text", [SlowText(answer=STREAMED)])
async def test_streaming_in_a_group_edits_one_message(
    polling: TelegramHarness, server: FakeTelegramServer, fake_text: SlowText
) -> None:
    slow = fake_text
    await polling.deliver(message_update(f"@{BOT_USERNAME} stream please", chat_id=GROUP))
    [preview] = server.calls_to("sendMessage")
    edits = server.calls_to("editMessageText")
    assert edits and not server.calls_to("sendMessageDraft")
    assert slow.answer.startswith(_visible(preview)) and _visible(preview) != slow.answer
    assert _visible(edits[-1]) == slow.answer and _buttons(edits[-1]) == ["👍", "👎"]


@pytest.mark.parametrize("fake_text", [BreaksOff(answer=STREAMED)])
async def test_an_answer_that_breaks_off_is_replaced_by_the_apology(
    app: App, polling: TelegramHarness, server: FakeTelegramServer
) -> None:
    await polling.deliver(message_update(f"@{BOT_USERNAME} stream please", chat_id=GROUP))
    [preview] = server.calls_to("sendMessage")
    assert STREAMED.startswith(_visible(preview))
    edits = server.calls_to("editMessageText")
    apology = "The text service is unavailable right now, try again in a minute."
    assert _visible(edits[-1]) == apology
    assert edits[-1].params["message_id"] == edits[0].params["message_id"]
    async with unit_of_work(app.sessions) as session:
        roles = (await session.scalars(select(Message.role))).all()
    assert roles == ["user"]  # the half answer is not the bot's turn


async def test_a_sticker_gets_told_what_the_bot_understands(
    polling: TelegramHarness, server: FakeTelegramServer, fake_text: FakeTextGenerator
) -> None:
    sticker = {
        "file_id": "s",
        "file_unique_id": "u",
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
    }
    await polling.deliver(message_update(None, sticker=sticker, chat_id=GROUP))
    assert not server.calls_to("sendMessage")  # not addressed to the bot in a group
    await polling.deliver(message_update(None, sticker=sticker))
    [answer] = sent_texts(server)
    assert "a sticker" in answer and "text messages and commands" in answer
    assert not fake_text.calls


async def test_events_resumed_after_a_restart_are_answered_in_their_topic(
    polling: TelegramHarness, server: FakeTelegramServer
) -> None:
    assert isinstance(polling.platform, Resumable)
    stored = Incoming(
        platform="telegram",
        event_id="4711",
        chat_id=str(GROUP),
        thread_id="12",
        user_id="100",
        text="hello",
        is_private=False,
    )
    await polling.platform.responder_for(stored).send(Reply(text="**late** answer"))
    [call] = server.calls_to("sendMessage")
    assert (call.chat_id, call.params["message_thread_id"]) == (GROUP, 12)
    assert call.params["text"] == "<b>late</b> answer"


def test_runner_starts_telegram_when_the_token_is_set(settings: Settings) -> None:
    assert configured_platforms(settings) == []
    with_token = settings.model_copy(update={"telegram_bot_token": SecretStr(TOKEN)})
    [platform] = configured_platforms(with_token)
    assert isinstance(platform, TelegramPlatform) and platform.routes() == []
    webhook = with_token.model_copy(update={"telegram_webhook_url": WEBHOOK_URL})
    [platform] = configured_platforms(webhook)
    assert isinstance(platform, HasRoutes)
    assert [getattr(r, "path", None) for r in platform.routes()] == ["/telegram/webhook"]


def _start_up_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bot.platforms.telegram.platform" and r.levelno == logging.WARNING
    ]


@pytest.mark.parametrize(("method", "webhook"), [("getMe", False), ("setWebhook", True)])
async def test_start_up_waits_out_a_failing_bot_api(
    app: App,
    server: FakeTelegramServer,
    caplog: pytest.LogCaptureFixture,
    method: str,
    webhook: bool,
) -> None:
    server.fail_next(method, 502, "Bad Gateway")
    harness = TelegramHarness(server, webhook=webhook)
    await harness.start(app.dispatcher.dispatch, commands=app.router.commands)
    try:
        await server.wait_for(method, count=2)
        await harness.deliver(message_update("/start"))
        assert len(server.calls_to("sendMessage")) == 1
    finally:
        await harness.stop()
    assert _start_up_warnings(caplog) == [f"{method} failed (Bad Gateway); retrying in 1s"]


async def test_stop_ends_a_start_up_that_waits_for_telegram(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as closed:  # nothing listens on it once closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    platform = TelegramPlatform(TelegramConfig(token=TOKEN, api_url=f"http://127.0.0.1:{port}"))
    starting = asyncio.create_task(platform.start(app.dispatcher.dispatch))
    async with asyncio.timeout(5):
        while not _start_up_warnings(caplog):  # noqa: ASYNC110 - a log record sets no event
            await asyncio.sleep(0.01)
    await platform.stop()
    async with asyncio.timeout(1):
        await starting  # returns: no error for the runner to report
    [warning] = _start_up_warnings(caplog)
    assert warning.startswith("getMe failed (") and warning.endswith("); retrying in 1s")


async def test_a_refused_token_stops_with_one_clear_line(
    migrated: Settings,
    server: FakeTelegramServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bot.runner.settle_heap", lambda: None)  # keep the test process's gc
    settings = migrated.model_copy(
        update={
            "telegram_bot_token": SecretStr(TOKEN),
            "telegram_api_url": server.base_url,
            "http_port": 0,
        }
    )
    server.fail_next("getMe", 401, "Unauthorized")
    # bot/cli.py prints it as "switchboard: TELEGRAM_BOT_TOKEN was refused ..." and exits 2.
    with pytest.raises(ConfigurationError, match=r"^TELEGRAM_BOT_TOKEN was refused by Telegram"):
        await run_platforms(settings, configured_platforms(settings))
    assert [r for r in caplog.records if r.exc_info] == []  # no traceback
    assert server.calls_to("getMe", "getUpdates") == server.calls_to("getMe")


async def test_a_refused_webhook_is_a_bad_setting_in_one_line(
    migrated: Settings,
    server: FakeTelegramServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bot.runner.settle_heap", lambda: None)
    settings = migrated.model_copy(
        update={
            "telegram_bot_token": SecretStr(TOKEN),
            "telegram_api_url": server.base_url,
            "telegram_webhook_url": "http://bot.example.com/telegram/webhook",
            "http_port": 0,
        }
    )
    server.fail_next("setWebhook", 400, "Bad Request: bad webhook: An HTTPS URL must be provided")
    with pytest.raises(ConfigurationError, match=r"^Telegram refused the webhook \(.*HTTPS"):
        await run_platforms(settings, configured_platforms(settings))
    assert [r for r in caplog.records if r.exc_info] == []
    assert "started" not in caplog.text  # the bot never said it was up


def test_a_webhook_secret_telegram_would_refuse_is_a_bad_setting(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="A-Z, a-z, 0-9, _ and -") as info:
        Settings.model_validate(
            {**settings.model_dump(), "telegram_webhook_secret": "abc+/=LeakCheck"}
        )
    # bot/cli.py prints the errors without their input values.
    assert "LeakCheck" not in _settings_errors(info.value)
    assert "TELEGRAM_WEBHOOK_SECRET" in _settings_errors(info.value)
    assert (
        Settings.model_validate(
            {**settings.model_dump(), "telegram_webhook_secret": "ok_Secret-123"}
        ).telegram_webhook_secret
        is not None
    )


def test_a_malformed_token_is_a_bad_setting_that_is_not_shown(settings: Settings) -> None:
    malformed = settings.model_copy(
        update={"telegram_bot_token": SecretStr("7312954860 LeakCheckMalformedToken")}
    )
    # bot/cli.py prints it as "switchboard: TELEGRAM_BOT_TOKEN is not ..." and exits 2.
    with pytest.raises(ConfigurationError, match=r"^TELEGRAM_BOT_TOKEN is not a Telegram") as info:
        configured_platforms(malformed)
    assert "LeakCheck" not in str(info.value)
