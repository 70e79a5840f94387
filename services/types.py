"""Service protocols and the value types they exchange."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    role: Role
    text: str


class ProviderError(Exception):
    """A model provider failed; ``user_message`` is safe to show in chat."""

    def __init__(self, user_message: str, *, detail: str = "") -> None:
        super().__init__(detail or user_message)
        self.user_message = user_message
        self.detail = detail


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
