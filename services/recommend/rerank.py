"""Optional: a capable text model re-ranks the hybrid's candidates and words the reasons.

This is the LLM-as-ranker idea (Hou et al., "Large Language Models are Zero-Shot Rankers",
ECIR 2024) in its simplest form. The hybrid never depends on it: any failure, timeout or
unparseable answer leaves the hybrid's order and reasons in place.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Protocol

from services.types import TextGenerator, Turn

_LINE = re.compile(r"^\s*\[?(\d{1,3})\]?\s*[|:.)\-–]\s*(.*?)\s*$")


class Reranker(Protocol):
    """Orders candidate titles for a history; returns (candidate index, reason or None)."""

    async def rerank(
        self, history: Sequence[str], candidates: Sequence[str], *, n: int
    ) -> list[tuple[int, str | None]]: ...


class LLMReranker:
    """Asks a chat model to pick the ``n`` likeliest next purchases among numbered candidates."""

    def __init__(
        self, text: TextGenerator, *, timeout: float = 20.0, max_tokens: int = 400
    ) -> None:
        self._text = text
        self._timeout = timeout
        self._max_tokens = max_tokens

    async def rerank(
        self, history: Sequence[str], candidates: Sequence[str], *, n: int
    ) -> list[tuple[int, str | None]]:
        async with asyncio.timeout(self._timeout):
            chunks = [
                chunk
                async for chunk in self._text.stream(
                    prompt(history, candidates, n=n), max_tokens=self._max_tokens, temperature=0
                )
            ]
        return parse("".join(chunks), count=len(candidates), n=n)


def prompt(history: Sequence[str], candidates: Sequence[str], *, n: int) -> list[Turn]:
    bought = "\n".join(f"- {title}" for title in history[-20:])
    options = "\n".join(f"{i}. {title}" for i, title in enumerate(candidates, start=1))
    return [
        Turn("system", "You are a shop assistant who recommends products. Be concise."),
        Turn(
            "user",
            f"A customer bought, oldest first:\n{bought}\n\nCandidates:\n{options}\n\n"
            f"Choose the {n} candidates this customer is most likely to buy next, best first. "
            "Answer with one line per choice, exactly `number | reason`, the reason under 15 "
            "words and naming what they bought when it applies. Nothing else.",
        ),
    ]


def parse(answer: str, *, count: int, n: int) -> list[tuple[int, str | None]]:
    """Valid, distinct candidate numbers in the model's order (0-based), with its reasons."""
    picked: list[tuple[int, str | None]] = []
    seen: set[int] = set()
    for line in answer.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        index = int(match[1]) - 1
        if 0 <= index < count and index not in seen:
            seen.add(index)
            picked.append((index, match[2].strip("` ") or None))
        if len(picked) == n:
            break
    return picked
