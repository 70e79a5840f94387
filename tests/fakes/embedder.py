"""A deterministic Embedder: hashed bag of words, so texts sharing words are similar."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

_WORD = re.compile(r"[a-z0-9]+")


class FakeEmbedder:
    """Each word adds 1 to a hashed dimension; rows are L2-normalised (a text with no words
    gets the first axis), like the real providers'."""

    name = "fake:hashed-words"

    def __init__(self, dim: int = 64) -> None:
        self._dim = dim
        self.calls: list[int] = []  # batch sizes, to check that imports batch

    @property
    def dim(self) -> int:
        return self._dim

    def vector(self, text: str) -> NDArray[np.float32]:
        row = np.zeros(self._dim, dtype=np.float32)
        for word in _WORD.findall(text.lower()):
            row[zlib.crc32(word.encode()) % self._dim] += 1.0
        norm = float(np.linalg.norm(row))
        if norm == 0:
            row[0] = 1.0
            return row
        return row / norm

    async def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls.append(len(texts))
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.stack([self.vector(t) for t in texts])
