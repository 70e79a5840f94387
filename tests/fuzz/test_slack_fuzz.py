"""Malformed and random Slack payloads (Events API callbacks, slash-command forms, interactivity
JSON) thrown at the pure translators and at the real signed endpoint, with slack-bolt, the
dispatcher and the store behind it. Nothing may answer 5xx, log an error or leave an unhandled
exception, and nothing is answered for a payload that translates to no message."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.compose import App
from bot.platforms.slack import MAX_BODY_BYTES, SERVICE_COMMANDS, SlackPlatform
from bot.platforms.slack_incoming import action_to_incoming, command_to_incoming, event_to_incoming
from bot.platforms.slack_render import ACTION_PREFIX
from handlers.types import Incoming
from tests.fakes.slack_server import BOT_USER_ID, TEAM_ID, FakeSlackApi
from tests.fuzz.conftest import ErrorTrap, watch_loop
from tests.fuzz.strategies import (
    ints,
    json_values,
    mostly,
    mutated,
    nasty_text,
    payload,
    rarely,
    short_text,
    sometimes,
)
from tests.platforms.slack_harness import APP_TOKEN, BOT_TOKEN, SlackHarness

# Every Web API method that would show the user something.
ANSWERS = (
    "chat.postMessage",
    "chat.startStream",
    "chat.appendStream",
    "chat.update",
    "chat.postEphemeral",
    "files.getUploadURLExternal",
    "assistant.threads.setStatus",
)
SHARED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
FORM = "application/x-www-form-urlencoded"

ids = st.one_of(st.sampled_from(["U0ADA", "U0BOT", "C0CHAN", "D0ADA", "G0GRP", ""]), short_text)
timestamps = st.one_of(st.sampled_from(["100.1", "1700000000.000100"]), short_text, ints)
files = st.lists(payload({"id": ids, "url_private": sometimes(short_text)}), max_size=2)

events = payload(
    {
        "type": mostly(
            st.sampled_from(["message", "app_mention", "assistant_thread_started", "reaction"]),
            short_text,
        ),
        "user": mostly(st.just("U0ADA"), ids),
        "channel": mostly(st.sampled_from(["C0CHAN", "D0ADA"]), ids),
        "channel_type": sometimes(st.sampled_from(["im", "im", "channel", "group", "mpim"])),
        "text": sometimes(st.one_of(nasty_text, short_text.map(lambda t: f"<@{BOT_USER_ID}> {t}"))),
        "ts": timestamps,
        "thread_ts": sometimes(timestamps),
        "subtype": rarely(st.sampled_from(["bot_message", "file_share", "message_changed"])),
        "bot_id": rarely(ids),
        "files": sometimes(files),
        "team": sometimes(ids),
        "assistant_thread": sometimes(
            payload({"channel_id": ids, "thread_ts": timestamps, "user_id": ids})
        ),
    }
)


@st.composite
def event_bodies(draw: st.DrawFn) -> Any:
    callback = payload(
        {
            "token": st.just("legacy"),
            "team_id": st.one_of(st.just(TEAM_ID), ids),
            "api_app_id": st.just("A0APP"),
            "type": st.one_of(
                st.just("event_callback"), st.sampled_from(["url_verification", "app_rate_limited"])
            ),
            "event_id": mostly(st.integers(min_value=0).map("Ev{}".format), json_values),
            "event_time": ints,
            "event": events,
            "challenge": sometimes(short_text),
            "authorizations": sometimes(
                st.just([{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}])
            ),
        }
    )
    return draw(st.one_of(callback, callback, callback, json_values))


commands = payload(
    {
        "token": st.just("legacy"),
        "team_id": st.one_of(st.just(TEAM_ID), ids),
        "channel_id": st.one_of(st.sampled_from(["C0CHAN", "D0ADA"]), ids),
        "channel_name": st.one_of(st.sampled_from(["general", "directmessage"]), short_text),
        "user_id": ids,
        "user_name": short_text,
        "command": st.one_of(st.sampled_from([f"/{c}" for c in SERVICE_COMMANDS]), short_text),
        "text": nasty_text,
        "api_app_id": st.just("A0APP"),
        "response_url": st.just("https://hooks.slack.invalid/commands/1"),
        "trigger_id": short_text,
    }
)
action_items = payload(
    {
        "type": st.just("button"),
        "action_id": st.one_of(st.just(f"{ACTION_PREFIX}0"), short_text),
        "block_id": short_text,
        "value": st.one_of(st.sampled_from(["fb:up:Ev1", "fb:down:Ev1", "forget:yes"]), short_text),
        "action_ts": timestamps,
    }
)
actions = payload(
    {
        "type": st.one_of(st.just("block_actions"), short_text),
        "team": sometimes(payload({"id": ids})),
        "user": payload({"id": ids, "username": short_text, "team_id": ids}),
        "api_app_id": st.just("A0APP"),
        "trigger_id": short_text,
        "channel": sometimes(payload({"id": ids})),
        "container": sometimes(
            payload({"type": st.just("message"), "channel_id": ids, "thread_ts": timestamps})
        ),
        "message": sometimes(payload({"ts": timestamps, "thread_ts": sometimes(timestamps)})),
        "actions": st.lists(action_items, max_size=2),
    }
)


def _form_value(value: Any) -> str:
    # A form carries strings only; what is not one arrives as its JSON text.
    return value if isinstance(value, str) else json.dumps(value)


def _check(incoming: Incoming | None) -> None:
    if incoming is not None:
        for value in (incoming.event_id, incoming.chat_id, incoming.user_id, incoming.text):
            assert isinstance(value, str)
            value.encode()  # the store and the Web API take UTF-8


@settings(max_examples=700, deadline=None, suppress_health_check=SHARED, database=None)
@given(body=event_bodies())
@example(body={"event_id": "Ev1", "event": ["not", "an", "object"]})  # found by this fuzzing
@example(body={"event": {"type": "message", "channel_type": "im", "channel": "D1", "user": "U"}})
@example(body={"event": {"type": "app_mention", "channel": "C1", "user": "U", "subtype": []}})
def test_event_translation_never_raises(body: Any) -> None:
    if isinstance(body, dict):
        _check(event_to_incoming(body, bot_user_id=BOT_USER_ID))
        _check(event_to_incoming(body, bot_user_id=None))


@settings(max_examples=400, deadline=None, suppress_health_check=SHARED, database=None)
@given(form=st.one_of(commands, st.dictionaries(short_text, short_text, max_size=4)))
@example(form={"command": "/help", "text": "x"})  # no channel, no user: found by this fuzzing
def test_command_translation_never_raises(form: dict[str, Any]) -> None:
    # Bolt hands the listener the parsed form: every value a string.
    _check(command_to_incoming({k: _form_value(v) for k, v in form.items()}))
    _check(command_to_incoming({k: _form_value(v) for k, v in form.items()}, prefix="sb-"))


@settings(max_examples=400, deadline=None, suppress_health_check=SHARED, database=None)
@given(body=st.one_of(actions, actions, json_values))
@example(body={"actions": {"action_id": "x"}, "channel": "C1", "user": "U1"})
@example(  # a user name that is not text: found by this fuzzing
    body={
        "actions": [{"action_id": "switchboard:fb", "value": "v"}],
        "channel": {"id": "C1"},
        "user": {"id": "U1", "username": True},
    }
)
def test_action_translation_never_raises(body: Any) -> None:
    if isinstance(body, dict):
        _check(action_to_incoming(body))


@pytest.fixture
async def slack_api() -> AsyncIterator[FakeSlackApi]:
    api = FakeSlackApi(token=BOT_TOKEN, app_token=APP_TOKEN)
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def slack(app: App, slack_api: FakeSlackApi) -> AsyncIterator[SlackHarness]:
    platform = SlackPlatform(
        bot_token=BOT_TOKEN,
        signing_secret="test-signing-secret",
        api_url=slack_api.base_url,
        stream_interval=0.01,
    )
    harness = SlackHarness(platform)
    await harness.start(app.dispatcher.dispatch)
    yield harness
    await harness.stop()


def _answers(api: FakeSlackApi) -> int:
    return len(api.calls_to(*ANSWERS, ok=None))


def _expects_answer(kind: str, body: Any) -> bool:
    """Whether the pure translation makes a message of ``body`` (bolt may still drop it)."""
    if not isinstance(body, dict):
        return False
    if kind == "event":
        return event_to_incoming(body, bot_user_id=BOT_USER_ID) is not None
    if kind == "command":
        return command_to_incoming(body) is not None
    return action_to_incoming(body) is not None


def _urlencode(form: dict[str, str]) -> bytes:
    # Lone surrogates too, percent-encoded as the invalid UTF-8 a broken client would send.
    return urlencode(form, errors="surrogatepass").encode()


_fresh = iter(range(10**9))


def _fresh_ids(kind: str, body: Any) -> Any:
    """Each example is a new delivery (the inbox rightly ignores an event it has seen, and
    Hypothesis replays examples while shrinking)."""
    if not isinstance(body, dict):
        return body
    n = next(_fresh)
    if kind == "event" and isinstance(body.get("event_id"), str):
        return {**body, "event_id": f"{body['event_id']}#{n}"}
    if kind != "event" and isinstance(body.get("trigger_id"), str):
        return {**body, "trigger_id": f"{body['trigger_id']}#{n}"}
    return body


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, Any, bytes, str]:
    """(kind, the payload, the HTTP body, its content type) as Slack would post it, or not."""
    kind = draw(st.sampled_from(["event", "command", "action", "junk"]))
    if kind == "event":
        body = _fresh_ids(kind, draw(st.one_of(event_bodies(), mutated(event_bodies()))))
        return kind, body, json.dumps(body).encode(), "application/json"
    if kind == "command":
        form = {k: _form_value(v) for k, v in _fresh_ids(kind, draw(commands)).items()}
        return kind, form, _urlencode(form), FORM
    if kind == "action":
        body = _fresh_ids(kind, draw(st.one_of(actions, mutated(actions), json_values)))
        if draw(st.integers(min_value=0, max_value=7)) == 0:
            # A payload field that is no JSON at all.
            return kind, None, _urlencode({"payload": draw(short_text)}), FORM
        return kind, body, _urlencode({"payload": json.dumps(body)}), FORM
    content_type = draw(st.sampled_from(["application/json", FORM, "text/plain"]))
    return kind, None, draw(st.binary(max_size=200)), content_type


# Signed bodies slack-bolt failed on with a 500 and a logged traceback, found by this fuzzing.
EVENT_NOT_AN_OBJECT = json.dumps({"type": "event_callback", "event": "x"}).encode()
ACTIONS_NOT_A_LIST = _urlencode({"payload": json.dumps({"type": "block_actions", "actions": 1})})
ACTION_WITHOUT_ID = _urlencode(
    {"payload": json.dumps({"type": "block_actions", "actions": [{"value": "x"}]})}
)


@settings(max_examples=700, deadline=None, suppress_health_check=SHARED, database=None)
@given(request=requests())
@example(request=("junk", None, b"null", "application/json"))
@example(request=("junk", None, b"\xff{", FORM))
@example(request=("event", None, EVENT_NOT_AN_OBJECT, "application/json"))
@example(request=("action", None, ACTIONS_NOT_A_LIST, FORM))
@example(request=("action", None, ACTION_WITHOUT_ID, FORM))
async def test_signed_endpoint_takes_any_payload_without_error(
    slack: SlackHarness,
    slack_api: FakeSlackApi,
    trap: ErrorTrap,
    request: tuple[str, Any, bytes, str],
) -> None:
    watch_loop(trap)
    kind, body, raw, content_type = request
    before = _answers(slack_api)
    sent = await slack.post(raw, content_type=content_type)
    await slack.platform.drain()
    trap.check()
    assert 200 <= sent.status < 500, (sent, raw)
    if not _expects_answer(kind, body):
        assert _answers(slack_api) == before, ("answered garbage", raw)


@settings(max_examples=100, deadline=None, suppress_health_check=SHARED, database=None)
@given(body=event_bodies(), secret=st.text(max_size=20))
@example(body=None, secret="")  # "null" unsigned: bolt parsed it before the signature, and failed
async def test_a_bad_signature_is_refused_and_nothing_runs(
    slack: SlackHarness, slack_api: FakeSlackApi, trap: ErrorTrap, body: Any, secret: str
) -> None:
    watch_loop(trap)
    calls = len(slack_api.calls)
    raw = json.dumps(body).encode()
    sent = await slack.post(raw, content_type="application/json", secret=secret + "-wrong")
    await slack.platform.drain()
    trap.check()
    # A body too big to buffer is refused before its signature is read.
    assert sent.status == (413 if len(raw) > MAX_BODY_BYTES else 401)
    assert len(slack_api.calls) == calls
