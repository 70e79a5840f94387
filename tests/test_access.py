"""Access control, quotas, rate limits, over-long messages, /stats and /forget."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from bot.compose import App, build_app
from bot.settings import Settings
from handlers.access import AccessPolicy
from handlers.types import Incoming
from services.container import GenerationConfig, Services
from storage.db import unit_of_work
from storage.models import Feedback, Message, Usage, User
from tests.fakes.responder import CollectingResponder
from tests.fakes.text import FakeTextGenerator

_ids = itertools.count(1)


def incoming(text: str, *, user: str = "u1", chat: str = "c1", **extra: object) -> Incoming:
    return Incoming(
        platform="telegram",
        event_id=f"a{next(_ids)}",
        chat_id=chat,
        user_id=user,
        text=text,
        **extra,  # type: ignore[arg-type]
    )


async def say(app: App, text: str, **kwargs: object) -> CollectingResponder:
    responder = CollectingResponder()
    await app.dispatcher.dispatch(incoming(text, **kwargs), responder)
    return responder


@pytest.fixture
async def make_app(migrated: Settings) -> AsyncIterator[object]:
    built: list[App] = []

    def make(**overrides: object) -> App:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=migrated.data_dir,
            **overrides,  # type: ignore[arg-type]
        )
        services = Services(
            text=FakeTextGenerator(answer="one two three four"),
            generation=GenerationConfig(system_prompt="", max_tokens=16, temperature=0),
        )
        app = build_app(settings, services=services)
        built.append(app)
        return app

    yield make
    for app in built:
        await app.close()


def test_policy_matches_bare_and_platform_qualified_ids() -> None:
    policy = AccessPolicy.of(users=["telegram:42", "U7"], admins=["99"])
    assert policy.allows(incoming("x", user="42"))
    assert policy.allows(incoming("x", user="U7"))
    assert not policy.allows(incoming("x", user="43"))
    assert policy.allows(incoming("x", user="99"))  # admins always get in
    assert AccessPolicy.of().allows(incoming("x", user="anyone"))
    workspace = AccessPolicy.of(workspaces=["T1"])
    assert workspace.allows(incoming("x", workspace_id="T1"))
    assert not workspace.allows(incoming("x", workspace_id="T2"))


async def test_strangers_are_turned_away_and_nothing_is_stored(make_app: object) -> None:
    app = make_app(allowed_users="telegram:1", allowed_chats="")  # type: ignore[operator]
    refused = await say(app, "hello", user="2")
    assert refused.texts == ["Sorry, this assistant is private. Ask its administrator for access."]
    # In a group, a stranger is ignored silently rather than answered.
    assert not (await say(app, "hello", user="2", chat="-100", is_private=False)).replies
    assert (await say(app, "hello", user="1")).texts == ["one two three four"]
    async with unit_of_work(app.sessions) as session:
        users = (await session.scalars(select(User.external_id))).all()
    assert users == ["1"]


async def test_daily_message_quota_says_when_it_resets(make_app: object) -> None:
    app = make_app(quota_messages_per_day=2)  # type: ignore[operator]
    await say(app, "one")
    await say(app, "two")
    third = (await say(app, "three")).texts[0]
    assert third.startswith("Daily quota reached (2 messages); it resets at 00:00 UTC (in ")
    assert (await say(app, "hi", user="admin")).texts  # other users are unaffected


async def test_token_quota_counts_generated_tokens(make_app: object) -> None:
    app = make_app(quota_tokens_per_day=5)  # type: ignore[operator]
    await say(app, "first")  # the fake answer costs 5 tokens
    assert "generated tokens" in (await say(app, "second")).texts[0]
    async with unit_of_work(app.sessions) as session:
        usage = (await session.scalars(select(Usage))).one()
    assert (usage.messages, usage.tokens, usage.day) == (1, 5, datetime.now(UTC).date().isoformat())


async def test_admins_are_exempt_and_rate_limit_applies_to_others(make_app: object) -> None:
    app = make_app(rate_limit_per_minute=2, admin_users="boss")  # type: ignore[operator]
    replies = [(await say(app, f"m{i}")).texts[0] for i in range(3)]
    assert replies[2].startswith("You're sending messages too quickly")
    boss = [(await say(app, f"b{i}", user="boss")).texts[0] for i in range(4)]
    assert boss == ["one two three four"] * 4


async def test_over_long_messages_get_a_clear_reply(make_app: object) -> None:
    app = make_app(max_message_chars=100)  # type: ignore[operator]
    text = (await say(app, "x" * 101)).texts[0]
    assert text.startswith("That message is too long (101 characters; the limit is 100)")


async def test_stats_is_for_admins(make_app: object) -> None:
    app = make_app(admin_users="boss")  # type: ignore[operator]
    await say(app, "hello")
    assert (await say(app, "/stats")).texts == ["/stats is for administrators."]
    stats = (await say(app, "/stats", user="boss")).texts[0]
    assert "users: 2" in stats and "today (UTC): 2 messages" in stats


async def test_forget_asks_first_then_deletes_everything_about_the_user(make_app: object) -> None:
    app = make_app()  # type: ignore[operator]
    answered = await say(app, "my secret is 42")
    await say(app, "", action=answered.replies[-1].buttons[0].data)  # a 👍 vote
    await say(app, "someone else's message", user="u2")
    ask = await say(app, "/forget")
    assert [b.data for b in ask.replies[0].buttons] == ["forget:yes", "forget:no"]
    assert (await say(app, "", action="forget:no")).texts == ["Nothing was deleted."]
    done = await say(app, "", action="forget:yes")
    assert done.texts == ["Done: everything stored about you is deleted."]
    async with unit_of_work(app.sessions) as session:
        texts = (await session.scalars(select(Message.text))).all()
        assert "my secret is 42" not in texts
        assert texts.count("one two three four") == 1  # only u2's answer is left
        assert (await session.scalar(select(func.count(Feedback.id)))) == 0
        users = (await session.scalars(select(User.external_id))).all()
    assert users == ["u2"]
    assert "someone else's message" in texts
