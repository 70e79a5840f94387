"""The Slack adapter end to end: signed requests to the real endpoint served by uvicorn, the real
slack-bolt and slack_sdk code, and a fake Slack Web API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from bot.compose import App, ConfigurationError
from bot.handoff_answers import AnswerCourier
from bot.platforms.slack import MAX_BODY_BYTES, SERVICE_COMMANDS, SlackPlatform
from bot.runner import configured_platforms
from bot.settings import Settings
from handlers.context import Context
from handlers.middleware import NOT_SAVED
from handlers.types import Incoming, Reply
from services.types import Turn
from storage import handoffs
from storage.db import unit_of_work
from storage.models import Feedback, InboxEvent
from tests.fakes.inbox import FlakyInbox
from tests.fakes.responder import CollectingResponder
from tests.fakes.slack_server import BOT_ID, BOT_USER_ID, FakeSlackApi
from tests.fakes.text import BreaksOff, FakeTextGenerator
from tests.platforms.slack_harness import (
    APP_TOKEN,
    BOT_TOKEN,
    SIGNING_SECRET,
    SlackHarness,
    command_payload,
    event_callback,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
REPLIES = ("chat.postMessage", "chat.startStream", "chat.postEphemeral")


class GatedText(FakeTextGenerator):
    """The scripted model, held at the start of each answer while ``gate`` is clear."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()
        self.finished = 0

    async def stream(
        self, turns: Sequence[Turn], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        self.calls.append(list(turns))
        self.started.set()
        await self.gate.wait()
        for word in self.answer.split(" "):
            yield word + " "
        self.finished += 1


@pytest.fixture
def fake_text() -> GatedText:
    return GatedText()


@pytest.fixture
async def slack_api() -> AsyncIterator[FakeSlackApi]:
    api = FakeSlackApi(token=BOT_TOKEN, app_token=APP_TOKEN)
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def slack(app: App, slack_api: FakeSlackApi) -> AsyncIterator[SlackHarness]:
    @app.router.command("draw", args="<prompt>", summary="test-only: reply with an image")
    async def draw(ctx: Context, args: str) -> None:
        await ctx.reply(Reply(text=f"**{args}**", image=PNG))

    platform = SlackPlatform(
        bot_token=BOT_TOKEN,
        signing_secret=SIGNING_SECRET,
        api_url=slack_api.base_url,
        commands=(*SERVICE_COMMANDS, "draw"),
    )
    harness = SlackHarness(platform)
    await harness.start(app.dispatcher.dispatch)
    yield harness
    await harness.stop()


def mention(
    text: str, *, ts: str, thread_ts: str | None = None, channel: str = "C0CHAN"
) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "app_mention", "user": "U0ADA", "channel": channel, "ts": ts}
    event["text"] = f"<@{BOT_USER_ID}> {text}"
    return event | ({"thread_ts": thread_ts} if thread_ts else {})


def dm(text: str, *, ts: str, thread_ts: str | None = None, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "message",
        "channel_type": "im",
        "channel": "D0ADA",
        "user": "U0ADA",
    }
    event |= {"text": text, "ts": ts, **extra}
    return event | ({"thread_ts": thread_ts} if thread_ts else {})


def streamed_text(api: FakeSlackApi, thread_ts: str) -> str:
    """The whole text of answers streamed into ``thread_ts``."""
    starts = [c for c in api.calls_to("chat.startStream") if c["thread_ts"] == thread_ts]
    stream_ts = {c["ts"] for c in api.calls_to("chat.appendStream")}
    parts = [c.get("markdown_text", "") for c in starts]
    parts += [c["markdown_text"] for c in api.calls_to("chat.appendStream") if c["ts"] in stream_ts]
    return "".join(parts)


def section_texts(call: dict[str, Any]) -> str:
    return "\n".join(b["text"]["text"] for b in call.get("blocks") or [] if b["type"] == "section")


# --- conversations -----------------------------------------------------------------------


async def test_mention_is_answered_in_its_thread_and_the_thread_is_the_conversation(
    slack: SlackHarness, slack_api: FakeSlackApi, fake_text: GatedText
) -> None:
    assert (await slack.event(mention("My name is Ada.", ts="100.1"), event_id="Ev1")).status == 200
    await slack.platform.drain()
    start = slack_api.calls_to("chat.startStream")[0]
    assert (start["channel"], start["thread_ts"]) == ("C0CHAN", "100.1")
    assert start["recipient_user_id"] == "U0ADA" and start["recipient_team_id"] == "T0TEAM"
    assert "Hello from the fake model." in streamed_text(slack_api, "100.1")
    assert len(slack_api.calls_to("chat.appendStream")) == 1  # throttled, not one per chunk
    stop = slack_api.calls_to("chat.stopStream")[0]
    assert [e["text"]["text"] for e in stop["blocks"][0]["elements"]] == ["👍", "👎"]

    follow_up = mention("What is my name?", ts="100.5", thread_ts="100.1")
    await slack.event(follow_up, event_id="Ev2")
    await slack.platform.drain()
    turns = [t.text for t in fake_text.calls[-1]]
    assert turns[-3:] == ["My name is Ada.", "Hello from the fake model.", "What is my name?"]
    assert slack_api.calls_to("chat.startStream")[1]["thread_ts"] == "100.1"

    # Another thread in the same channel is another conversation.
    await slack.event(mention("Who am I?", ts="200.1"), event_id="Ev3")
    await slack.platform.drain()
    assert "My name is Ada." not in [t.text for t in fake_text.calls[-1]]


async def test_a_persons_answer_to_a_handoff_is_posted_in_its_thread(
    app: App, slack: SlackHarness, slack_api: FakeSlackApi
) -> None:
    asked = Incoming("slack", "Ev1", "C0CHAN", "U0ADA", "Do you ship to Mars?", thread_id="100.1")
    await app.dispatcher.dispatch(asked, CollectingResponder())
    pressed = Incoming(
        "slack", "Ev2", "C0CHAN", "U0ADA", "", thread_id="100.1", action="handoff:Ev1"
    )
    await app.dispatcher.dispatch(pressed, CollectingResponder())
    async with unit_of_work(app.sessions) as session:
        [handoff] = await handoffs.list_handoffs(session)
        await handoffs.answer_handoff(session, handoff_id=handoff.id, text="Not yet!", by="Maria")
    courier = AnswerCourier(app.sessions, {"slack": slack.platform.responder_for})
    assert await courier.deliver_due() == 1
    [post] = [c for c in slack_api.calls_to("chat.postMessage") if "Not yet!" in str(c)]
    assert (post["channel"], post["thread_ts"]) == ("C0CHAN", "100.1")
    assert "Maria from the support team" in str(post)
    assert await courier.deliver_due() == 0


async def test_an_event_the_store_refuses_gets_an_apology(
    app: App, slack: SlackHarness, slack_api: FakeSlackApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Slack has its ack already and will not send the event again: the user must hear it.
    FlakyInbox(app, monkeypatch, failures=None)
    assert (await slack.event(mention("Hello?", ts="150.1"), event_id="EvLost")).status == 200
    await slack.platform.drain()
    posted = slack_api.calls_to("chat.postMessage")
    assert [(c["thread_ts"], c["text"]) for c in posted] == [("150.1", NOT_SAVED)]


@pytest.mark.parametrize("fake_text", [BreaksOff(answer="one two three four five six")])
async def test_an_answer_that_breaks_off_is_replaced_by_the_apology(
    slack: SlackHarness, slack_api: FakeSlackApi
) -> None:
    await slack.event(mention("Tell me", ts="160.1"), event_id="EvBroken")
    await slack.platform.drain()
    [start] = slack_api.calls_to("chat.startStream")
    assert start["markdown_text"] == "one"  # the first word is shown at once
    [stop] = slack_api.calls_to("chat.stopStream")
    [update] = slack_api.calls_to("chat.update")
    assert stop["ts"] == update["ts"]
    assert update["text"] == "The text service is unavailable right now, try again in a minute."
    assert slack_api.calls_to("chat.postMessage") == []


async def test_dm_is_a_conversation_and_a_thread_in_it_its_own(
    slack: SlackHarness, slack_api: FakeSlackApi, fake_text: GatedText
) -> None:
    await slack.event(dm("I like tea.", ts="300.1"), event_id="Ev1")
    await slack.platform.drain()
    # No thread to stream into: a posted message, then edited with the final text.
    post = slack_api.calls_to("chat.postMessage")[0]
    assert post["channel"] == "D0ADA" and "thread_ts" not in post
    # Five chunks arrive within a second: one post, then a single edit (at most one a second).
    [final] = slack_api.calls_to("chat.update")
    assert final["ts"] == "1700000000.000001"
    assert "Hello from the fake model." in section_texts(final)
    assert final["blocks"][-1]["type"] == "actions"

    await slack.event(dm("What do I like?", ts="300.2"), event_id="Ev2")
    await slack.platform.drain()
    assert "I like tea." in [t.text for t in fake_text.calls[-1]]

    await slack.event(dm("And now?", ts="300.3", thread_ts="300.2"), event_id="Ev3")
    await slack.platform.drain()
    assert "I like tea." not in [t.text for t in fake_text.calls[-1]]
    status = slack_api.calls_to("assistant.threads.setStatus")
    assert [s["status"] for s in status] == ["is thinking…", ""]
    assert status[0]["thread_ts"] == "300.2"


@pytest.mark.parametrize(
    "event",
    [
        dm("from a bot", ts="1.1", bot_id=BOT_ID),
        dm("from a bot", ts="1.2", subtype="bot_message"),
        dm("edited", ts="1.3", subtype="message_changed"),
        dm("", ts="1.4", subtype="message_deleted"),
        {"type": "reaction_added", "user": "U0ADA", "reaction": "tada"},
        {
            "type": "message",
            "channel_type": "channel",
            "channel": "C0CHAN",
            "user": "U0ADA",
            "text": f"<@{BOT_USER_ID}> hi",
            "ts": "1.5",
        },
    ],
    ids=[
        "bot_id",
        "bot_message",
        "message_changed",
        "message_deleted",
        "unsubscribed_kind",
        "channel_message",
    ],
)
async def test_events_the_bot_does_not_answer(
    slack: SlackHarness, slack_api: FakeSlackApi, event: dict[str, Any]
) -> None:
    assert (await slack.event(event, event_id="EvIgnored")).status == 200
    await slack.platform.drain()
    assert not slack_api.calls_to(*REPLIES)


async def test_assistant_thread_started_suggests_prompts(
    slack: SlackHarness, slack_api: FakeSlackApi
) -> None:
    thread = {"user_id": "U0ADA", "channel_id": "D0ADA", "thread_ts": "400.1", "context": {}}
    event = {"type": "assistant_thread_started", "assistant_thread": thread}
    assert (await slack.event(event, event_id="EvA")).status == 200
    await slack.platform.drain()
    [call] = slack_api.calls_to("assistant.threads.setSuggestedPrompts")
    assert call["channel_id"] == "D0ADA" and call["thread_ts"] == "400.1"
    assert {"title": "What can you do?", "message": "/help"} in call["prompts"]


# --- slash commands ----------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICE_COMMANDS)
async def test_each_slash_command_is_acked_and_answered_once(
    slack: SlackHarness, slack_api: FakeSlackApi, app: App, name: str
) -> None:
    sent = await slack.command(f"/{name}", "a calm sea")
    assert sent.status == 200 and '"in_channel"' in sent.body
    await slack.platform.drain()
    replies = slack_api.calls_to(*REPLIES)
    assert len(replies) == 1
    if name not in {c.name for c in app.router.commands}:
        # Built later by other services: the router's own answer, shown only to the user.
        [ephemeral] = slack_api.calls_to("chat.postEphemeral")
        assert f"Unknown command /{name}" in ephemeral["text"] and ephemeral["user"] == "U0ADA"


async def test_gen_result_posts_in_the_channel(
    slack: SlackHarness, slack_api: FakeSlackApi, fake_text: GatedText
) -> None:
    await slack.command("/gen", "Write a haiku.")
    await slack.platform.drain()
    assert [t.text for t in fake_text.calls[0]][-1] == "Write a haiku."
    post = slack_api.calls_to("chat.postMessage")[0]
    assert post["channel"] == "C0CHAN" and "thread_ts" not in post
    assert "Hello from the fake model." in section_texts(slack_api.calls_to("chat.update")[-1])


async def test_help_and_reset_answer_in_the_channel(
    slack: SlackHarness, slack_api: FakeSlackApi
) -> None:
    await slack.command("/help")
    await slack.command("/reset")
    await slack.platform.drain()
    texts = [section_texts(c) for c in slack_api.calls_to("chat.postMessage")]
    assert any("`/gen &lt;prompt&gt;`" in t for t in texts)
    assert any("fresh conversation" in t for t in texts)
    assert not slack_api.calls_to("chat.postEphemeral")


async def test_usage_error_is_ephemeral(slack: SlackHarness, slack_api: FakeSlackApi) -> None:
    await slack.command("/gen", "")
    await slack.platform.drain()
    [ephemeral] = slack_api.calls_to("chat.postEphemeral")
    assert ephemeral["text"].startswith("Usage: `/gen &lt;prompt&gt;`")
    assert not slack_api.calls_to("chat.postMessage")


async def test_slow_generation_does_not_delay_the_ack(
    slack: SlackHarness, slack_api: FakeSlackApi, fake_text: GatedText
) -> None:
    fake_text.gate.clear()  # the model takes as long as the test wants
    sent = await slack.command("/gen", "A long story.")
    # The ack is back while the generation is still held: it did not wait for it.
    assert sent.status == 200
    await fake_text.started.wait()
    assert fake_text.finished == 0 and not slack_api.calls_to(*REPLIES)
    fake_text.gate.set()
    await slack.platform.drain()
    assert fake_text.finished == 1
    assert len(slack_api.calls_to("chat.postMessage")) == 1


# --- exactly once, verification, rate limits ---------------------------------------------


async def test_retry_is_acked_and_never_answered_twice(
    slack: SlackHarness, slack_api: FakeSlackApi, fake_text: GatedText, app: App
) -> None:
    event = mention("hello", ts="500.1")
    assert (await slack.event(event, event_id="EvSame")).status == 200
    await slack.platform.drain()
    assert (await slack.event(event, event_id="EvSame", retry=1)).status == 200
    # A retry racing the original is dropped as well.
    fake_text.gate.clear()
    other = mention("again", ts="500.2")
    both = [slack.event(other, event_id="EvRace"), slack.event(other, event_id="EvRace", retry=1)]
    assert [s.status for s in await asyncio.gather(*both)] == [200, 200]
    fake_text.gate.set()
    await slack.platform.drain()
    assert len(slack_api.calls_to("chat.startStream")) == 2
    assert len(fake_text.calls) == 2
    async with unit_of_work(app.sessions) as session:
        events = (await session.scalars(select(InboxEvent))).all()
        assert sorted(e.event_id for e in events) == ["EvRace", "EvSame"]


@pytest.mark.parametrize(
    ("secret", "age"), [("wrong-secret", 0), (SIGNING_SECRET, 6 * 60)], ids=["bad", "stale"]
)
async def test_unverified_requests_get_401(
    slack: SlackHarness, slack_api: FakeSlackApi, secret: str, age: int
) -> None:
    body = urlencode(command_payload("/help")).encode()
    sent = await slack.post(
        body,
        content_type="application/x-www-form-urlencoded",
        secret=secret,
        timestamp=int(time.time()) - age,
    )
    assert sent.status == 401
    await slack.platform.drain()
    assert not slack_api.calls


async def test_a_huge_or_unsized_body_is_refused_before_it_is_read(
    slack: SlackHarness, slack_api: FakeSlackApi
) -> None:
    # Unsigned floods must not be buffered whole to find out that they are unsigned.
    huge = b"x" * (MAX_BODY_BYTES + 1)
    assert (await slack.post(huge, content_type="application/json")).status == 413

    async def chunked() -> AsyncIterator[bytes]:
        yield b'{"type": "url_verification"}'

    assert slack.url
    async with aiohttp.ClientSession() as http, http.post(slack.url, data=chunked()) as response:
        assert response.status == 411
    assert not slack_api.calls


async def test_rate_limited_call_waits_and_is_retried(
    slack: SlackHarness, slack_api: FakeSlackApi
) -> None:
    slack_api.rate_limit_once("chat.postMessage", retry_after=0)
    await slack.command("/help")
    await slack.platform.drain()
    assert len(slack_api.calls_to("chat.postMessage", ok=False)) == 1
    [delivered] = slack_api.calls_to("chat.postMessage")
    assert "/gen" in section_texts(delivered)


# --- rendering surfaces ------------------------------------------------------------------


async def test_image_is_uploaded_into_the_thread(
    slack: SlackHarness, slack_api: FakeSlackApi
) -> None:
    await slack.event(mention("/draw a cat", ts="600.1"), event_id="EvImg")
    await slack.platform.drain()
    [url] = slack_api.calls_to("files.getUploadURLExternal")
    assert url["filename"] == "image.png" and int(url["length"]) == len(PNG)
    assert list(slack_api.uploads.values()) == [PNG]
    [done] = slack_api.calls_to("files.completeUploadExternal")
    assert (done["channel_id"], done["thread_ts"]) == ("C0CHAN", "600.1")
    assert done["initial_comment"] == "*a cat*"


async def test_image_from_a_slash_command(slack: SlackHarness, slack_api: FakeSlackApi) -> None:
    await slack.command("/draw", "a dog")
    await slack.platform.drain()
    [done] = slack_api.calls_to("files.completeUploadExternal")
    assert done["channel_id"] == "C0CHAN" and "thread_ts" not in done


async def test_refused_native_stream_falls_back_to_chat_update(
    slack: SlackHarness, slack_api: FakeSlackApi
) -> None:
    slack_api.refuse("chat.startStream", error="not_allowed_token_type")
    await slack.event(mention("hi", ts="700.1"), event_id="EvF1")
    await slack.event(mention("hi again", ts="700.2"), event_id="EvF2")
    await slack.platform.drain()
    # Refused once, then not tried again: each answer is a threaded post plus its edit.
    assert len(slack_api.calls_to("chat.startStream", ok=False)) == 1
    posts = slack_api.calls_to("chat.postMessage")
    assert sorted(p["thread_ts"] for p in posts) == ["700.1", "700.2"]
    assert "Hello from the fake model." in section_texts(slack_api.calls_to("chat.update")[-1])


async def test_button_press_stores_the_vote_and_answers_ephemerally(
    slack: SlackHarness, slack_api: FakeSlackApi, app: App
) -> None:
    await slack.event(mention("rate me", ts="800.1"), event_id="EvRated")
    await slack.platform.drain()
    stop = slack_api.calls_to("chat.stopStream")[0]
    up = stop["blocks"][0]["elements"][0]["value"]
    message = {"ts": stop["ts"], "thread_ts": "800.1", "type": "message", "text": ""}
    assert (await slack.press(up, channel="C0CHAN", message=message)).status == 200
    await slack.platform.drain()
    [notice] = slack_api.calls_to("chat.postEphemeral")
    assert notice["text"] == "Thanks for the feedback!" and notice["thread_ts"] == "800.1"
    async with unit_of_work(app.sessions) as session:
        votes = (await session.scalars(select(Feedback))).all()
        assert [(v.event_id, v.score) for v in votes] == [("EvRated", 1)]


async def test_no_secret_reaches_the_logs(
    slack: SlackHarness, slack_api: FakeSlackApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await slack.event(mention("hi", ts="850.1"), event_id="EvLog")
    await slack.command("/gen", "")
    await slack.post(b"{}", content_type="application/json", secret="wrong-secret")
    await slack.platform.drain()
    assert "chat.startStream" in caplog.text  # slack_sdk did log its requests
    assert BOT_TOKEN not in caplog.text and SIGNING_SECRET not in caplog.text


# --- Socket Mode and configuration -------------------------------------------------------


async def test_socket_mode_receives_commands_without_http(
    app: App, slack_api: FakeSlackApi
) -> None:
    platform = SlackPlatform(bot_token=BOT_TOKEN, app_token=APP_TOKEN, api_url=slack_api.base_url)
    assert platform.routes() == []
    running = asyncio.create_task(platform.start(app.dispatcher.dispatch))
    try:
        ack = await slack_api.socket_send("slash_commands", command_payload("/help"))
        assert ack["payload"]["response_type"] == "in_channel"
        event = event_callback(dm("hello", ts="900.1"), event_id="EvSocket")
        await slack_api.socket_send("events_api", event)
        # Socket Mode acks after the listener ran, so the answer is already tracked.
        await platform.drain()
    finally:
        await platform.stop()
        await running
    assert len(slack_api.calls_to("chat.postMessage")) == 2


async def test_after_stop_events_are_refused_so_slack_redelivers_them(
    slack: SlackHarness, slack_api: FakeSlackApi
) -> None:
    await slack.platform.stop()
    assert (await slack.event(mention("late", ts="950.1"), event_id="EvLate")).status == 503
    assert not slack_api.calls_to(*REPLIES)


def test_slack_starts_when_its_token_is_set(settings: Settings) -> None:
    assert configured_platforms(settings) == []
    with_token = settings.model_copy(update={"slack_bot_token": SecretStr("xoxb-1")})
    with pytest.raises(ConfigurationError, match="SLACK_SIGNING_SECRET"):
        configured_platforms(with_token)
    http = with_token.model_copy(update={"slack_signing_secret": SecretStr("s")})
    [platform] = configured_platforms(http)
    assert platform.name == "slack"
