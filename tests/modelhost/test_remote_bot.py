"""A bot with MODEL_HOST_URL set: every local model is used through `serve-models`, none is
loaded in the bot's process, and /sentiment, /image, chat and embeddings all work."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import numpy as np
import pytest
from sqlalchemy import select

from bot.compose import App, build_app, build_services
from bot.settings import Settings
from handlers.types import Incoming
from services.images import REFUSED, UNAVAILABLE
from services.modelhost.server import ModelHost, build_model_app
from services.providers.openai import OpenAITextGenerator
from services.providers.openai_embeddings import OpenAIEmbedder
from services.providers.openai_images import OpenAIImageGenerator
from services.providers.remote import RemoteSentimentAnalyzer
from storage.db import unit_of_work
from storage.models import Message
from tests.fakes.models import FakeImageGenerator
from tests.fakes.responder import CollectingResponder
from tests.modelhost.conftest import serving

_ids = itertools.count(1)


def remote_settings(migrated: Settings, url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=migrated.data_dir,
        model_host_url=url,
        model_host_api_key="host-secret",  # type: ignore[arg-type]
        image_size="64x64",
        text_max_tokens=8,
        text_temperature=0,
    )


@pytest.fixture
async def remote_app(migrated: Settings, host: ModelHost) -> AsyncIterator[App]:
    host.api_key = "host-secret"
    async with serving(build_model_app(host)) as url:
        settings = remote_settings(migrated, url)
        app = build_app(settings, services=build_services(settings))
        yield app
        await app.close()


async def say(app: App, text: str) -> CollectingResponder:
    responder = CollectingResponder()
    incoming = Incoming(
        platform="test", event_id=f"r{next(_ids)}", chat_id="c", user_id="u", text=text
    )
    await app.dispatcher.dispatch(incoming, responder)
    return responder


async def test_every_model_is_reached_through_the_server(remote_app: App) -> None:
    services = remote_app.services
    assert isinstance(services.text, OpenAITextGenerator)
    assert isinstance(services.sentiment, RemoteSentimentAnalyzer)
    assert isinstance(services.embeddings, OpenAIEmbedder)
    assert isinstance(services.images, OpenAIImageGenerator)

    sentiment = await say(remote_app, "/sentiment I love this wonderful, moving film.")
    assert sentiment.texts[0].startswith("🙂 **Positive**")

    images = await say(remote_app, "/image a small cat --n 2")
    assert [r.text for r in images.replies] == ["a small cat (1/2)", "a small cat (2/2)"]
    assert all(r.image and r.image.startswith(b"\x89PNG") for r in images.replies)

    chat = await say(remote_app, "What is the capital of France?")
    assert chat.texts and chat.texts[0].strip()  # SmolLM2's words, streamed over SSE
    assert remote_app.turn_sentiment is not None
    await remote_app.turn_sentiment.drain()
    async with unit_of_work(remote_app.sessions) as session:
        turn = await session.scalar(
            select(Message).where(Message.text == "What is the capital of France?")
        )
    assert turn is not None and turn.sentiment in ("positive", "negative")

    assert services.embeddings is not None
    vectors = await services.embeddings.embed(["one", "two"])
    assert vectors.shape == (2, 384) and services.embeddings.dim == 384
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_a_refusal_on_the_server_is_a_plain_message(migrated: Settings) -> None:
    host = ModelHost(images=FakeImageGenerator(refuse=True))
    async with serving(build_model_app(host)) as url:
        settings = remote_settings(migrated, url)
        app = build_app(settings, services=build_services(settings))
        try:
            assert (await say(app, "/image something forbidden")).texts == [REFUSED]
        finally:
            await app.close()


async def test_a_server_that_is_down_means_try_again_in_a_minute(migrated: Settings) -> None:
    settings = remote_settings(migrated, "http://127.0.0.1:9")  # nothing listens there
    app = build_app(settings, services=build_services(settings))
    try:
        assert (await say(app, "/image a cat")).texts == [UNAVAILABLE]
        assert (await say(app, "/sentiment fine")).texts == [
            "The sentiment service is unavailable, try again in a minute."
        ]
    finally:
        await app.close()
