"""Micro-batched front of a sentiment model whose ``predict`` labels a whole batch at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from services.modelhost.batcher import MicroBatcher
from services.types import Sentiment


class BatchPredictor(Protocol):
    """A classifier that labels a list of texts in one blocking call (a forward pass)."""

    name: str

    def predict(self, texts: Sequence[str]) -> list[Sentiment]: ...


@runtime_checkable
class Warmable(Protocol):
    async def warm(self) -> None: ...


class BatchedSentimentAnalyzer:
    """A :class:`~services.types.SentimentAnalyzer` whose concurrent callers share batches.

    Sixty-four users asking at once cost one or two forward passes instead of sixty-four; the
    model runs in the batcher's thread, never on the event loop.
    """

    def __init__(
        self,
        model: BatchPredictor,
        *,
        max_batch: int = 64,
        max_wait_ms: float = 5.0,
        max_queue: int = 128,
    ) -> None:
        self.name = model.name
        self._model = model
        self.batcher: MicroBatcher[str, Sentiment] = MicroBatcher(
            model.predict,
            name=f"sentiment:{model.name}",
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
        )

    async def analyze(self, texts: Sequence[str]) -> list[Sentiment]:
        return await self.batcher.run(list(texts))

    async def warm(self) -> None:
        if isinstance(self._model, Warmable):
            await self._model.warm()
