"""An app wired with instant fakes of every model-backed service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.compose import App, build_app
from bot.settings import Settings
from services.container import GenerationConfig, ImageConfig, Services
from tests.fakes.models import FakeEmbedder, FakeImageGenerator, FakeSentimentModel
from tests.fakes.text import FakeTextGenerator


@pytest.fixture
def fake_sentiment() -> FakeSentimentModel:
    return FakeSentimentModel()


@pytest.fixture
def fake_images() -> FakeImageGenerator:
    return FakeImageGenerator()


@pytest.fixture
async def model_app(
    migrated: Settings,
    fake_text: FakeTextGenerator,
    fake_sentiment: FakeSentimentModel,
    fake_images: FakeImageGenerator,
) -> AsyncIterator[App]:
    services = Services(
        text=fake_text,
        generation=GenerationConfig(system_prompt="You are a test.", max_tokens=64, temperature=0),
        sentiment=fake_sentiment,
        embeddings=FakeEmbedder(),
        images=fake_images,
        image_config=ImageConfig(
            default_size="512x512", max_n=4, max_side=1024, max_prompt_chars=100
        ),
    )
    built = build_app(migrated, services=services)
    yield built
    await built.close()
