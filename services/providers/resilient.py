"""Provider resilience: a circuit breaker per provider and a fallback chain across providers.

`TEXT_PROVIDER=openai,local` means: ask OpenAI; when it fails before saying anything (timeout,
429 and 5xx after the SDK's own retries with backoff, or a refused request) or its breaker is
open, ask the local model. A provider that keeps having outages is skipped for a cool-down
instead of being hammered; refused requests do not count towards that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

from services.types import ProviderError, TextGenerator, Turn

log = logging.getLogger(__name__)


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; lets one trial call through after
    ``cooldown`` seconds (half-open) and closes again when it succeeds."""

    def __init__(
        self,
        *,
        threshold: int = 3,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def is_open(self) -> bool:
        if self._opened_at is None:
            return False
        # After the cool-down the breaker is half-open: the next call is a trial.
        return self._clock() - self._opened_at < self._cooldown

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def record_failure(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold:
            self._opened_at = self._clock()


class FallbackTextGenerator:
    """Tries each generator in order; falls through only when nothing was streamed yet."""

    def __init__(
        self,
        generators: Sequence[TextGenerator],
        *,
        breaker: Callable[[], CircuitBreaker] = CircuitBreaker,
    ) -> None:
        if not generators:
            raise ValueError("a fallback chain needs at least one provider")
        self._chain = [(g, breaker()) for g in generators]
        self.name = ",".join(g.name for g in generators)

    @property
    def context_window(self) -> int:
        # The prompt must fit whichever provider ends up answering.
        return min(g.context_window for g, _ in self._chain)

    def count_tokens(self, text: str) -> int:
        return max(g.count_tokens(text) for g, _ in self._chain)

    async def stream(
        self, turns: Sequence[Turn], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        last: ProviderError | None = None
        for generator, breaker in self._chain:
            if breaker.is_open:
                log.info("skipping %s: circuit open", generator.name)
                continue
            started = False
            try:
                async for chunk in generator.stream(
                    turns, max_tokens=max_tokens, temperature=temperature
                ):
                    started = True
                    yield chunk
            except ProviderError as exc:
                # Only outages count: one user's oversized prompt, or a wrong key, must not
                # send everyone to the fallback for the cool-down.
                if exc.transient:
                    breaker.record_failure()
                log.warning("%s failed: %s", generator.name, exc.detail or exc.user_message)
                if started:
                    raise  # half an answer is out; a second voice would only confuse
                # A refused request still goes on down the chain: the next provider has its
                # own key, model, context window and token count, so a 400 or 401 here may
                # well succeed there, and one that is bad everywhere costs one quick refusal.
                last = exc
                continue
            breaker.record_success()
            return
        raise last or ProviderError(
            "The text service is unavailable right now, try again in a minute.",
            detail="every provider's circuit is open",
        )
