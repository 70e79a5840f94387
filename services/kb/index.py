"""In-memory indexes over the chunks: dense (a numpy matrix) and lexical (BM25 postings).

Both score every chunk for a query in one vectorised pass: a matrix-vector product for the
dense index, one ``bincount`` over the query terms' postings for BM25. At 100,000 chunks of
MiniLM's 384 dimensions that is a few milliseconds, so no approximate index is needed until a
knowledge base outgrows one process's memory (then pgvector, see ARCHITECTURE.md).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

_TOKEN = re.compile(r"[a-z0-9]+")
# Words that carry no topic; BM25's idf would shrink them anyway, but dropping them keeps the
# postings short, which is what makes scoring fast.
STOPWORDS = frozenset(
    "a an and are as at be but by can could do does did for from have has had how i if in is it "  # noqa: SIM905
    "its me my of on or our please so that the their them then there these they this to was we "
    "were what when where which who why will with would you your".split()
)


def tokenize(text: str) -> list[str]:
    tokens = _TOKEN.findall(text.lower())
    # A light plural fold ("refunds" → "refund") without a stemmer dependency.
    return [
        t[:-1] if len(t) > 3 and t.endswith("s") and not t.endswith("ss") else t
        for t in tokens
        if t not in STOPWORDS
    ]


def top_k(scores: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    """Indices of the ``k`` highest scores, best first."""
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    if k < scores.shape[0]:
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(scores.shape[0])
    return part[np.argsort(-scores[part], kind="stable")]


class DenseIndex:
    """Cosine similarity over L2-normalised rows."""

    def __init__(self, vectors: NDArray[np.float32]) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def scores(self, query: NDArray[np.float32]) -> NDArray[np.float32]:
        """Similarity of every row to ``query`` (one vector), or to each query (a matrix)."""
        if len(self) == 0:
            return np.zeros((0,) if query.ndim == 1 else (query.shape[0], 0), dtype=np.float32)
        return (query @ self.vectors.T).astype(np.float32, copy=False)


class LexicalIndex:
    """Okapi BM25 with postings held as flat numpy arrays, one slice per term."""

    def __init__(self, texts: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.size = len(texts)
        counts = [Counter(tokenize(t)) for t in texts]
        lengths = np.array([sum(c.values()) for c in counts], dtype=np.float32)
        average = float(lengths.mean()) if self.size and lengths.mean() > 0 else 1.0
        postings: dict[str, list[tuple[int, int]]] = {}
        for row, counter in enumerate(counts):
            for term, tf in counter.items():
                postings.setdefault(term, []).append((row, tf))
        self._slices: dict[str, tuple[int, int]] = {}
        rows: list[int] = []
        weights: list[float] = []
        for term, entries in postings.items():
            idf = math.log(1 + (self.size - len(entries) + 0.5) / (len(entries) + 0.5))
            self._slices[term] = (len(rows), len(rows) + len(entries))
            for row, tf in entries:
                norm = tf + k1 * (1 - b + b * float(lengths[row]) / average)
                rows.append(row)
                weights.append(idf * tf * (k1 + 1) / norm)
        self._rows = np.array(rows, dtype=np.intp)
        self._weights = np.array(weights, dtype=np.float32)

    def __len__(self) -> int:
        return self.size

    def scores(self, query: str) -> NDArray[np.float32]:
        spans = [self._slices[t] for t in set(tokenize(query)) if t in self._slices]
        if not spans:
            return np.zeros(self.size, dtype=np.float32)
        rows = np.concatenate([self._rows[a:b] for a, b in spans])
        weights = np.concatenate([self._weights[a:b] for a, b in spans])
        return np.bincount(rows, weights=weights, minlength=self.size).astype(np.float32)
