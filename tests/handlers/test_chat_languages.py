"""A Chinese-speaking user of the English-only offline model is told so, once per chat."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest

from bot.compose import App, build_app, build_services
from bot.settings import Settings
from handlers.chat import ENGLISH_ONLY
from handlers.types import Incoming
from services.container import GenerationConfig, Services
from tests.fakes.responder import CollectingResponder
from tests.fakes.text import FakeTextGenerator

_ids = itertools.count(1)


@pytest.fixture
async def english_only_app(migrated: Settings, fake_text: FakeTextGenerator) -> AsyncIterator[App]:
    config = GenerationConfig(system_prompt="t", max_tokens=64, temperature=0, english_only=True)
    built = build_app(migrated, services=Services(text=fake_text, generation=config))
    yield built
    await built.close()


async def say(app: App, text: str, *, chat: str) -> list[str]:
    responder = CollectingResponder()
    incoming = Incoming("test", f"l{next(_ids)}", chat, "u1", text)
    await app.dispatcher.dispatch(incoming, responder)
    return responder.texts


async def test_a_chinese_message_gets_the_note_once_per_chat(english_only_app: App) -> None:
    first = await say(english_only_app, "你好，今天天气怎么样", chat="zh-1")
    assert first == ["Hello from the fake model.", ENGLISH_ONLY]
    assert await say(english_only_app, "讲个笑话", chat="zh-1") == ["Hello from the fake model."]
    assert await say(english_only_app, "hello there", chat="en-1") == ["Hello from the fake model."]
    assert ENGLISH_ONLY in await say(english_only_app, "谢谢", chat="zh-2")


async def test_a_model_that_speaks_chinese_gets_no_note(app: App) -> None:
    assert await say(app, "你好，今天天气怎么样", chat="zh-3") == ["Hello from the fake model."]


def test_only_the_packaged_offline_model_counts_as_english_only(settings: Settings) -> None:
    assert build_services(settings).generation.english_only
    other = settings.model_copy(update={"text_model": "Qwen/Qwen2.5-0.5B-Instruct"})
    assert not build_services(other).generation.english_only
