"""Instant stand-ins for the model-backed services: sentiment, images, embeddings."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from services.images import REFUSED, UNAVAILABLE, ImageRefused
from services.types import ProviderError, Sentiment

POSITIVE = {"love", "great", "good", "wonderful", "happy"}


def _keyword_sentiment(text: str) -> Sentiment:
    words = set(text.lower().split())
    if any("\u3040" <= char <= "\u30ff" for char in text):  # kana: a script it cannot read
        return Sentiment("unknown", 0.0)
    if "meh" in words:
        return Sentiment("positive", 0.55)
    return Sentiment("positive", 0.9) if words & POSITIVE else Sentiment("negative", 0.8)


class FakeSentimentModel:
    """A keyword classifier with the local model's blocking ``predict``; records batches."""

    name = "fake-sentiment"

    def __init__(self, *, fail: bool = False, delay: float = 0.0) -> None:
        self.fail = fail
        self.delay = delay
        self.batches: list[list[str]] = []

    def predict(self, texts: Sequence[str]) -> list[Sentiment]:
        self.batches.append(list(texts))
        if self.delay:
            import time

            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("the fake sentiment model is broken")
        return [_keyword_sentiment(t) for t in texts]

    async def analyze(self, texts: Sequence[str]) -> list[Sentiment]:
        return self.predict(texts)


class FakeImageGenerator:
    """Returns ``n`` tiny PNGs, or fails the way a provider does."""

    name = "fake-images"
    PNG = b"\x89PNG\r\n\x1a\nfake-image"

    def __init__(self, *, refuse: bool = False, down: bool = False, keep: int | None = None):
        self.refuse = refuse
        self.down = down
        self.keep = keep  # how many images survive the "safety checker"
        self.calls: list[tuple[str, str, int]] = []

    async def generate(self, prompt: str, *, size: str, n: int) -> list[bytes]:
        self.calls.append((prompt, size, n))
        await asyncio.sleep(0)
        if self.refuse:
            raise ImageRefused(REFUSED, detail="fake refusal")
        if self.down:
            raise ProviderError(UNAVAILABLE, detail="fake outage")
        return [self.PNG] * (n if self.keep is None else self.keep)


class FakeEmbedder:
    """Deterministic unit vectors from a hash of the text."""

    name = "fake-embeddings"
    dim = 8

    async def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=self.dim) for t in texts]
        matrix = np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        result: NDArray[np.float32] = matrix / np.maximum(norms, 1e-12)
        return result
