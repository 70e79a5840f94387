"""An instant, scripted TextGenerator that records what it was asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from services.types import ProviderError, Turn


class FakeTextGenerator:
    name = "fake"

    def __init__(
        self,
        *,
        answer: str = "Hello from the fake model.",
        context_window: int = 4096,
        delay: float = 0.0,
        fail: bool = False,
    ) -> None:
        self.answer = answer
        self.context_window = context_window
        self.delay = delay
        self.fail = fail
        self.calls: list[list[Turn]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 1

    async def stream(
        self, turns: Sequence[Turn], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        self.calls.append(list(turns))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise ProviderError("The text service is unavailable right now, try again in a minute.")
        for word in self.answer.split(" "):
            yield word + " "


class BreaksOff(FakeTextGenerator):
    """Streams the first words of its answer slowly (so previews show), then the provider fails."""

    async def stream(
        self, turns: Sequence[Turn], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]:
        self.calls.append(list(turns))
        for word in self.answer.split(" ")[:4]:
            await asyncio.sleep(0.03)
            yield word + " "
        raise ProviderError("The text service is unavailable right now, try again in a minute.")
