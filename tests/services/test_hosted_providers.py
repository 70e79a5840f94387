"""The real openai and zhipuai SDKs against our fake OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.compose import App, build_app, build_services
from bot.settings import Settings
from handlers.types import Incoming
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.responder import CollectingResponder


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    fake = FakeOpenAIServer(reply="Your name is Ada.")
    await fake.start()
    yield fake
    await fake.stop()


def _settings(migrated: Settings, server: FakeOpenAIServer, provider: str) -> Settings:
    base = server.openai_base_url if provider == "openai" else server.zhipuai_base_url
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=migrated.data_dir,
        text_provider=provider,  # type: ignore[arg-type]
        openai_api_key="sk-test-openai-key",  # type: ignore[arg-type]
        openai_base_url=base,
        zhipuai_api_key="zhipu-id.zhipu-secret",  # type: ignore[arg-type]
        zhipuai_base_url=base,
        text_timeout=5.0,
    )


async def _say(app: App, text: str, n: int) -> CollectingResponder:
    responder = CollectingResponder()
    incoming = Incoming(
        platform="test", event_id=f"e{n}", chat_id="c", user_id="u", user_name="Ada", text=text
    )
    await app.dispatcher.dispatch(incoming, responder)
    return responder


@pytest.mark.parametrize(
    ("provider", "path", "model"),
    [
        ("openai", "/v1/chat/completions", "gpt-4o-mini"),
        ("zhipuai", "/api/paas/v4/chat/completions", "glm-4-flash"),
    ],
)
async def test_history_is_sent_and_reset_empties_it(
    migrated: Settings, server: FakeOpenAIServer, provider: str, path: str, model: str
) -> None:
    settings = _settings(migrated, server, provider)
    app = build_app(settings, services=build_services(settings))
    try:
        first = await _say(app, "My name is Ada.", 1)
        assert first.texts == ["Your name is Ada."]
        await _say(app, "What is my name?", 2)
        request = server.requests[-1]
        assert request.path == path
        assert request.body["model"] == model and request.body["stream"] is True
        contents = [(m["role"], m["content"]) for m in request.messages]
        assert contents[1:] == [
            ("user", "My name is Ada."),
            ("assistant", "Your name is Ada."),
            ("user", "What is my name?"),
        ]
        assert contents[0][0] == "system"
        assert request.headers["Authorization"].startswith("Bearer ")

        await _say(app, "/reset", 3)
        await _say(app, "Who am I?", 4)
        after_reset = [(m["role"], m["content"]) for m in server.requests[-1].messages]
        assert after_reset[1:] == [("user", "Who am I?")]
    finally:
        await app.close()


@pytest.mark.parametrize("provider", ["openai", "zhipuai"])
async def test_outage_gets_one_line_and_the_message_is_kept(
    migrated: Settings, server: FakeOpenAIServer, provider: str
) -> None:
    from sqlalchemy import select

    from storage.db import unit_of_work
    from storage.models import Message

    server.fail_status = 500
    settings = _settings(migrated, server, provider)
    app = build_app(settings, services=build_services(settings))
    try:
        replies = await _say(app, "Hello?", 1)
        assert replies.texts == [
            "The text service is unavailable right now, try again in a minute."
        ]
        async with unit_of_work(app.sessions) as session:
            rows = (await session.scalars(select(Message))).all()
        assert [(m.role, m.text) for m in rows] == [("user", "Hello?")]
    finally:
        await app.close()


@pytest.mark.parametrize(
    ("provider", "setting", "key"),
    [
        ("openai", "OPENAI_API_KEY", "sk-test-openai-key"),
        ("zhipuai", "ZHIPUAI_API_KEY", "zhipu-secret"),
    ],
)
async def test_a_refused_key_is_not_try_again_and_the_log_names_the_setting(
    migrated: Settings,
    server: FakeOpenAIServer,
    caplog: pytest.LogCaptureFixture,
    provider: str,
    setting: str,
    key: str,
) -> None:
    server.fail_status = 401
    settings = _settings(migrated, server, provider)
    app = build_app(settings, services=build_services(settings))
    try:
        replies = await _say(app, "Hello?", 1)
    finally:
        await app.close()
    assert replies.texts == [
        "The text service is not set up correctly; an administrator needs to check it."
    ]
    assert [r for r in caplog.records if setting in r.getMessage()]
    assert key not in caplog.text
