"""Fallback chain and circuit breaker, with the real openai SDK against a failing fake server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.providers.openai import OpenAITextGenerator
from services.providers.resilient import CircuitBreaker, FallbackTextGenerator
from services.types import ProviderError, Turn
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.text import FakeTextGenerator


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_and_half_opens_after_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=2, cooldown=10, clock=clock)
    breaker.record_failure()
    assert not breaker.is_open
    breaker.record_failure()
    assert breaker.is_open
    clock.now = 10
    assert not breaker.is_open  # a trial call may go through
    breaker.record_success()
    breaker.record_failure()
    assert not breaker.is_open


@pytest.fixture
async def failing_server() -> AsyncIterator[FakeOpenAIServer]:
    server = FakeOpenAIServer(fail_status=503)
    await server.start()
    yield server
    await server.stop()


async def collect(generator: FallbackTextGenerator) -> str:
    turns = [Turn("user", "hi")]
    return "".join([c async for c in generator.stream(turns, max_tokens=8, temperature=0)])


async def test_falls_back_to_the_next_provider_and_stops_hammering_a_dead_one(
    failing_server: FakeOpenAIServer,
) -> None:
    openai = OpenAITextGenerator(
        api_key="sk-x", model="m", base_url=failing_server.openai_base_url, max_retries=1
    )
    local = FakeTextGenerator(answer="local answer")
    chain = FallbackTextGenerator(
        [openai, local], breaker=lambda: CircuitBreaker(threshold=2, cooldown=60)
    )
    for _ in range(4):
        assert (await collect(chain)).strip() == "local answer"
    # Two failing calls (each retried once by the SDK with backoff) opened the breaker; the
    # next two calls went straight to the local model.
    assert len(failing_server.requests) == 4
    assert len(local.calls) == 4


async def test_everything_down_is_one_clear_error() -> None:
    chain = FallbackTextGenerator([FakeTextGenerator(fail=True), FakeTextGenerator(fail=True)])
    with pytest.raises(ProviderError) as error:
        await collect(chain)
    assert "unavailable" in error.value.user_message


async def test_no_fallback_once_an_answer_has_started() -> None:
    class HalfThenFail(FakeTextGenerator):
        async def stream(
            self, turns: object, *, max_tokens: int, temperature: float
        ) -> AsyncIterator[str]:
            yield "half "
            raise ProviderError("broken")

    backup = FakeTextGenerator(answer="other")
    chain = FallbackTextGenerator([HalfThenFail(), backup])
    with pytest.raises(ProviderError):
        await collect(chain)
    assert backup.calls == []


def test_text_provider_list_builds_a_fallback_chain(tmp_path: object) -> None:
    from bot.compose import build_text_generator
    from bot.settings import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        text_provider="openai,local",  # type: ignore[arg-type]
        openai_api_key="sk-x",  # type: ignore[arg-type]
    )
    generator = build_text_generator(settings)
    assert isinstance(generator, FallbackTextGenerator)
    assert generator.name == "openai:gpt-4o-mini,local:smollm2-135m-instruct"
