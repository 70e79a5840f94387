"""Sentiment from a hosted chat model (OpenAI, ZhipuAI, any OpenAI-compatible server) asked for
a JSON label: a fallback where no classifier runs locally, slower and costlier per text."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from typing import Any

from services.types import ProviderError, Sentiment, TextGenerator, Turn

INSTRUCTIONS = (
    "You classify the sentiment of the user's text. Reply with JSON only, no prose: "
    '{"label": "positive" | "negative" | "neutral", "confidence": a number from 0 to 1}.'
)
UNREADABLE = "The sentiment service gave an answer I could not read, try again."
LABELS = ("positive", "negative", "neutral")
MAX_CHARS = 4000
_OBJECT = re.compile(r"\{.*?\}", re.S)


def parse_label(answer: str) -> Sentiment | None:
    """The model's JSON verdict; a bare label word counts too (at confidence 0.5)."""
    for candidate in _OBJECT.findall(answer):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        label = str(data.get("label", "")).strip().lower()
        if label in LABELS:
            raw: Any = data.get("confidence", data.get("score", 0.5))
            try:
                score = float(raw)
            except (TypeError, ValueError):
                score = 0.5
            return Sentiment(label=label, score=min(max(score, 0.0), 1.0))
    words = [label for label in LABELS if re.search(rf"\b{label}\b", answer.lower())]
    return Sentiment(label=words[0], score=0.5) if len(words) == 1 else None


class LLMSentimentAnalyzer:
    """A :class:`~services.types.SentimentAnalyzer` over any :class:`TextGenerator`."""

    def __init__(self, text: TextGenerator, *, concurrency: int = 8, max_tokens: int = 40):
        self.name = f"llm:{text.name}"
        self._text = text
        self._max_tokens = max_tokens
        self._limit = asyncio.Semaphore(concurrency)

    async def _one(self, text: str) -> Sentiment:
        turns = [Turn("system", INSTRUCTIONS), Turn("user", text[:MAX_CHARS])]
        async with self._limit:
            chunks = self._text.stream(turns, max_tokens=self._max_tokens, temperature=0.0)
            answer = "".join([chunk async for chunk in chunks])
        sentiment = parse_label(answer)
        if sentiment is None:
            raise ProviderError(UNREADABLE, detail=f"llm sentiment: unreadable {answer[:200]!r}")
        return sentiment

    async def analyze(self, texts: Sequence[str]) -> list[Sentiment]:
        return list(await asyncio.gather(*(self._one(text) for text in texts)))
