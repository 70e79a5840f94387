"""Service protocols and the value types they exchange."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    role: Role
    text: str


class ProviderError(Exception):
    """A model provider failed; ``user_message`` is safe to show in chat.

    ``transient`` says the provider itself is down or overloaded (a timeout, a lost
    connection, a 5xx or 429), which may heal and counts towards its circuit breaker. A
    request the provider refused (a bad prompt, a wrong key, an unknown model) is not: it says
    nothing about the provider's health for other users.
    """

    def __init__(self, user_message: str, *, detail: str = "", transient: bool = True) -> None:
        super().__init__(detail or user_message)
        self.user_message = user_message
        self.detail = detail
        self.transient = transient


class TextGenerator(Protocol):
    """Streams a reply to a list of turns. Implementations never block the event loop."""

    name: str

    @property
    def context_window(self) -> int:
        """Tokens the model accepts, prompt and reply together."""
        ...

    def stream(
        self, turns: Sequence[Turn], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[str]: ...

    def count_tokens(self, text: str) -> int: ...


@dataclass(frozen=True, slots=True)
class Sentiment:
    label: str  # "positive" or "negative" (a provider may add "neutral", or UNREADABLE_LABEL)
    score: float  # the model's confidence in ``label``, 0..1


UNREADABLE_LABEL = "unknown"  # a text in a language the model cannot read: no verdict


class SentimentAnalyzer(Protocol):
    """Labels texts; concurrent callers are micro-batched by the model host."""

    async def analyze(self, texts: Sequence[str]) -> list[Sentiment]: ...


class Embedder(Protocol):
    """Embeds texts as L2-normalised float32 rows."""

    @property
    def name(self) -> str:
        """Which model makes the vectors, and where: "local:<model>" or "openai:<model>"."""
        ...

    @property
    def dim(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> NDArray[np.float32]: ...


@runtime_checkable
class ReadsText(Protocol):
    """An embedder that can tell when it cannot read a text (a script its vocabulary lacks):
    a search with such a text finds nothing rather than noise."""

    def readable(self, text: str) -> bool: ...


def unreadable(embedder: object, text: str) -> bool:
    return isinstance(embedder, ReadsText) and not embedder.readable(text)


class ImageGenerator(Protocol):
    async def generate(self, prompt: str, *, size: str, n: int) -> list[bytes]:
        """PNG bytes, ``n`` images of ``size`` ("WxH")."""
        ...
