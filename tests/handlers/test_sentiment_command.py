"""/sentiment through the dispatcher, and the sentiment stored for every chat turn."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from sqlalchemy import select

from bot.compose import App
from handlers.types import Incoming
from services.modelhost.batched import BatchedSentimentAnalyzer
from services.modelhost.batcher import BusyError, MicroBatcher
from services.types import Sentiment, Turn
from storage.db import unit_of_work
from storage.models import Message
from tests.fakes.models import FakeSentimentModel
from tests.fakes.responder import CollectingResponder
from tests.fakes.text import FakeTextGenerator

_ids = itertools.count(1)


async def say(app: App, text: str) -> CollectingResponder:
    responder = CollectingResponder()
    incoming = Incoming(
        platform="test", event_id=f"s{next(_ids)}", chat_id="c", user_id="u", text=text
    )
    await app.dispatcher.dispatch(incoming, responder)
    return responder


async def stored(app: App) -> list[tuple[str, str, str | None]]:
    async with unit_of_work(app.sessions) as session:
        rows = (await session.scalars(select(Message).order_by(Message.id))).all()
        return [(m.role, m.text, m.sentiment) for m in rows]


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("I love this wonderful song", "🙂 **Positive** · confidence 90%"),
        ("the service was slow and rude", "🙁 **Negative** · confidence 80%"),
        ("meh it was ok", "😐 **Unsure**, leaning positive · confidence 55%"),
        (
            "この店は最悪です",
            "I can't tell the sentiment of text in this language (or of symbols alone).",
        ),
    ],
)
async def test_sentiment_answers_label_and_confidence(
    model_app: App, text: str, answer: str
) -> None:
    assert (await say(model_app, f"/sentiment {text}")).texts == [answer]


async def test_sentiment_without_text_gets_usage(model_app: App) -> None:
    assert (await say(model_app, "/sentiment")).texts[0].startswith("Usage: `/sentiment <text>`")


async def test_not_configured_is_one_line(app: App) -> None:
    assert (await say(app, "/sentiment hello")).texts == [
        "Sentiment analysis is not configured on this bot."
    ]


async def test_every_chat_turn_gets_its_sentiment_stored_after_the_reply(model_app: App) -> None:
    await say(model_app, "I love talking to you")
    await say(model_app, "this is awful")
    await say(model_app, "/help")
    await say(model_app, "この店は最悪です")
    assert model_app.turn_sentiment is not None
    await model_app.turn_sentiment.drain()
    rows = await stored(model_app)
    users = [(text, label) for role, text, label in rows if role == "user"]
    assert users == [
        ("I love talking to you", "positive"),
        ("this is awful", "negative"),
        ("/help", None),  # commands are not conversation turns
        ("この店は最悪です", None),  # a language the model cannot read: nothing to count
    ]
    assert all(label is None for role, _, label in rows if role == "assistant")


async def test_a_failing_sentiment_model_only_logs(
    model_app: App, fake_sentiment: FakeSentimentModel, caplog: pytest.LogCaptureFixture
) -> None:
    fake_sentiment.fail = True
    with caplog.at_level(logging.WARNING):
        replies = await say(model_app, "hello there")
        assert model_app.turn_sentiment is not None
        await model_app.turn_sentiment.drain()
    assert replies.texts == ["Hello from the fake model."]
    assert [label for role, _, label in await stored(model_app) if role == "user"] == [None]
    assert "sentiment of event" in caplog.text


class Gated:
    """A blocking batch function held shut until the test opens it."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()

    def __call__(self, items: list[str]) -> list[str]:
        self.started.set()
        self.gate.wait(timeout=10)
        return items

    def predict(self, texts: Sequence[str]) -> list[Sentiment]:
        self(list(texts))
        return [Sentiment("positive", 1.0) for _ in texts]


class BusyText(FakeTextGenerator):
    """A text model behind a real micro-batcher."""

    def __init__(self, batcher: MicroBatcher[str, str]) -> None:
        super().__init__()
        self._batcher = batcher

    async def stream(
        self, turns: Sequence[Turn], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        yield await self._batcher.submit(turns[-1].text)


async def _fill(
    submit: Callable[[], Awaitable[object]], gated: Gated
) -> list[asyncio.Future[object]]:
    """One request running (held by the gate) and one waiting: a queue of one is full."""
    running = asyncio.ensure_future(submit())
    await asyncio.to_thread(gated.started.wait, 10)
    waiting = asyncio.ensure_future(submit())
    await asyncio.sleep(0)
    return [running, waiting]


async def test_a_full_text_queue_answers_busy_in_chat(model_app: App) -> None:
    gated = Gated()
    batcher: MicroBatcher[str, str] = MicroBatcher(
        gated, name="text", max_batch=1, max_wait_ms=0, max_queue=1
    )
    pending = await _fill(lambda: batcher.submit("earlier"), gated)
    model_app.services.text = BusyText(batcher)
    try:
        replies = await say(model_app, "are you there?")
    finally:
        gated.gate.set()
    assert replies.texts == ["I'm busy with other requests right now, try again in a few seconds."]
    assert [await f for f in pending] == ["earlier", "earlier"]


async def test_a_full_sentiment_queue_answers_busy(model_app: App) -> None:
    gated = Gated()
    analyzer = BatchedSentimentAnalyzer(gated, max_batch=1, max_wait_ms=0, max_queue=1)
    pending = await _fill(lambda: analyzer.analyze(["earlier"]), gated)
    model_app.services.sentiment = analyzer
    try:
        replies = await say(model_app, "/sentiment hello")
    finally:
        gated.gate.set()
    assert replies.texts == [BusyError("sentiment").user_message]
    await asyncio.gather(*pending)
