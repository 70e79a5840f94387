"""SENTIMENT_PROVIDER=openai / zhipuai: a hosted chat model asked for a JSON label, through the
real SDKs against the fake OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.compose import build_services
from bot.settings import Settings
from services.providers.llm_sentiment import LLMSentimentAnalyzer, parse_label
from services.types import ProviderError, Sentiment
from tests.fakes.openai_server import FakeOpenAIServer


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"label": "positive", "confidence": 0.92}', Sentiment("positive", 0.92)),
        (
            'Sure! ```json\n{"label": "Negative", "confidence": "0.7"}\n```',
            Sentiment("negative", 0.7),
        ),
        ('{"label": "neutral", "confidence": 7}', Sentiment("neutral", 1.0)),
        ("negative", Sentiment("negative", 0.5)),
        ("I cannot tell whether it is positive or negative.", None),
        ('{"label": "angry"}', None),
    ],
)
def test_parse_label(answer: str, expected: Sentiment | None) -> None:
    assert parse_label(answer) == expected


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    fake = FakeOpenAIServer(reply='{"label": "positive", "confidence": 0.88}')
    await fake.start()
    yield fake
    await fake.stop()


@pytest.mark.parametrize("provider", ["openai", "zhipuai"])
async def test_hosted_llm_labels_texts(
    settings: Settings, server: FakeOpenAIServer, provider: str
) -> None:
    base = server.openai_base_url if provider == "openai" else server.zhipuai_base_url
    configured = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=settings.data_dir,
        sentiment_provider=provider,  # type: ignore[arg-type]
        openai_api_key="sk-test",  # type: ignore[arg-type]
        openai_base_url=base,
        zhipuai_api_key="id.secret",  # type: ignore[arg-type]
        zhipuai_base_url=base,
    )
    analyzer = build_services(configured).sentiment
    assert isinstance(analyzer, LLMSentimentAnalyzer)
    assert await analyzer.analyze(["I love it", "so so"]) == [Sentiment("positive", 0.88)] * 2
    request = server.requests[-1]
    assert request.body["temperature"] == 0 or provider == "zhipuai"
    assert "JSON" in request.messages[0]["content"]

    server.reply = "no idea"
    with pytest.raises(ProviderError) as unreadable:
        await analyzer.analyze(["hmm"])
    assert "could not read" in unreadable.value.user_message
