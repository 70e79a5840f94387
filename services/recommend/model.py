"""The hybrid recommender: sequence-aware co-occurrence, content similarity and popularity.

Six features score a product ``j`` for a history ``h`` (newest purchase weighted 1, the one
before ``recency``, ...):

- ``cooc``: log(1 + scale * sum_h w_h S[h, j]), S the normalised, pruned co-occurrence matrix;
- ``hop2``: the same through one intermediate product (S @ S), which reaches the long tail that
  never co-occurred with the history directly;
- ``content``: cosine of j's embedding with the history's weighted mean embedding;
- ``content_max``: the best cosine of j with one of the ``recent`` newest purchases;
- ``popularity``: log(1 + purchases of j); ``trend``: the same, counting recent purchases more.

The score is the weighted sum; :mod:`services.recommend.tuning` chooses the weights.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from services.recommend import signals
from services.recommend.content import ContentIndex
from services.recommend.signals import FloatArray, Histories, IntArray

FEATURES = ("cooc", "hop2", "content", "content_max", "popularity", "trend")


@dataclass(frozen=True, slots=True)
class Params:
    """How the statistics are built (chosen on a validation split, like the weights)."""

    window: int = 20  # 0: unordered co-occurrence of whole histories
    decay: float = 0.8  # per step of distance inside the window
    backward: float = 0.5  # weight of "bought before" relative to "bought after"
    power: float = 0.5  # normalisation exponent (0.5 = cosine)
    neighbors: int = 500  # strongest neighbours kept per product (0 = all)
    recency: float = 0.7  # weight of each older purchase in a history, relative to the next
    trend_decay: float = 0.5
    recent: int = 10  # newest purchases compared one by one for content_max
    scale: float = 10.0


@dataclass(frozen=True, slots=True)
class Weights:
    """Blend weights, in the order of :data:`FEATURES`."""

    cooc: float = 1.0
    hop2: float = 0.0
    content: float = 0.0
    content_max: float = 0.0
    popularity: float = 0.0
    trend: float = 0.0

    def array(self) -> FloatArray:
        return np.array(astuple(self), dtype=np.float32)

    @classmethod
    def of(cls, values: NDArray[np.floating] | list[float]) -> Weights:
        return cls(*(round(float(v), 4) for v in values))

    def describe(self) -> str:
        return ", ".join(f"{f.name} {getattr(self, f.name):g}" for f in fields(self))


@dataclass(frozen=True, slots=True)
class Scored:
    """Feature values of candidate products, one row each, for explanations."""

    items: IntArray
    scores: FloatArray
    features: FloatArray  # (len(items), len(FEATURES))


class HybridModel:
    """The statistics of one catalog and its purchase histories, ready to score."""

    def __init__(
        self,
        similarity: sp.csr_matrix,
        item_counts: FloatArray,
        *,
        recent_counts: FloatArray,
        content: ContentIndex,
        params: Params,
    ) -> None:
        self.similarity = similarity
        self.counts = item_counts
        self.log_counts = np.log1p(item_counts)
        self.log_trend = np.log1p(recent_counts)
        self.content = content
        self.params = params
        self._priors: dict[Weights, FloatArray] = {}

    @property
    def n_items(self) -> int:
        return len(self.counts)

    @classmethod
    def fit(
        cls,
        histories: Histories,
        embeddings: FloatArray,
        *,
        params: Params,
        content: ContentIndex | None = None,
    ) -> HybridModel:
        """``content``: the index of the same embeddings from an earlier fit, to reuse."""
        n_items = len(embeddings)
        item_counts = signals.counts(histories, n_items)
        pairs = signals.cooccurrence(
            histories,
            n_items,
            window=params.window,
            decay=params.decay,
            backward=params.backward,
        )
        similarity = signals.prune_rows(
            signals.normalise(pairs, item_counts, power=params.power), params.neighbors
        )
        return cls(
            similarity,
            item_counts,
            recent_counts=signals.trend(histories, n_items, decay=params.trend_decay),
            content=content if content is not None else ContentIndex(embeddings),
            params=params,
        )

    def history_weights(self, length: int) -> FloatArray:
        return (self.params.recency ** np.arange(length - 1, -1, -1)).astype(np.float32)

    # --- many histories, few candidates each (evaluation and tuning) ----------------------

    def candidate_features(
        self, histories: list[IntArray], candidates: IntArray, *, chunk: int = 512
    ) -> FloatArray:
        """Features of ``candidates[u, c]`` for ``histories[u]``: shape (users, candidates,
        features). Padding candidates (-1) get zeros."""
        out = np.zeros((*candidates.shape, len(FEATURES)), dtype=np.float32)
        for start in range(0, len(histories), chunk):
            part = slice(start, start + chunk)
            out[part] = self._chunk_features(histories[part], candidates[part])
        return out

    def _chunk_features(self, histories: list[IntArray], candidates: IntArray) -> FloatArray:
        safe = np.where(candidates >= 0, candidates, 0)
        rows = np.arange(len(histories))[:, None]
        queries = self._query_matrix(histories)
        one_hop = queries @ self.similarity
        two_hop = (one_hop @ self.similarity).toarray()
        scale = self.params.scale
        out = np.zeros((*candidates.shape, len(FEATURES)), dtype=np.float32)
        out[..., 0] = np.log1p(scale * one_hop.toarray()[rows, safe])
        out[..., 1] = np.log1p(scale * two_hop[rows, safe])
        embeddings = self.content.embeddings
        for u, history in enumerate(histories):
            if len(history) == 0:
                continue
            profile = self.content.profile(history, self.history_weights(len(history)))
            recent = embeddings[history[-self.params.recent :]]
            vectors = embeddings[safe[u]]
            out[u, :, 2] = vectors @ profile
            out[u, :, 3] = (vectors @ recent.T).max(axis=1)
        out[..., 4] = self.log_counts[safe]
        out[..., 5] = self.log_trend[safe]
        out[candidates < 0] = 0.0
        return out

    def _query_matrix(self, histories: list[IntArray]) -> sp.csr_matrix:
        lengths = [len(h) for h in histories]
        indptr = np.zeros(len(histories) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = np.concatenate(histories) if indptr[-1] else np.zeros(0, dtype=np.int64)
        weights = (
            np.concatenate([self.history_weights(n) for n in lengths])
            if indptr[-1]
            else np.zeros(0, dtype=np.float32)
        )
        return sp.csr_matrix((weights, items, indptr), shape=(len(histories), self.n_items))

    # --- one history, the whole catalog (serving) -----------------------------------------

    def prior(self, weights: Weights) -> FloatArray:
        """The history-free part of the score (computed once per weights)."""
        if weights not in self._priors:
            prior = weights.popularity * self.log_counts + weights.trend * self.log_trend
            self._priors[weights] = prior.astype(np.float32)
        return self._priors[weights]

    def score(self, history: IntArray, weights: Weights, *, shortlist: int = 1000) -> Scored:
        """Scores of the products worth scoring for ``history`` (already bought ones included;
        the caller removes them). In a big catalog, content is computed exactly only on a
        shortlist: the best ``shortlist`` by the other features plus the nearest ``shortlist``
        to the taste profile or the newest purchase in the coarse content space."""
        features = np.zeros((self.n_items, 2), dtype=np.float32)
        base = self.prior(weights)
        if len(history):
            query = sp.csr_matrix(
                (self.history_weights(len(history)), history, [0, len(history)]),
                shape=(1, self.n_items),
            )
            one_hop = query @ self.similarity
            two_hop = one_hop @ self.similarity
            scale = self.params.scale
            features[one_hop.indices, 0] = np.log1p(scale * one_hop.data)
            features[two_hop.indices, 1] = np.log1p(scale * two_hop.data)
            base = base + weights.cooc * features[:, 0] + weights.hop2 * features[:, 1]
        if len(history) == 0 or (weights.content == 0 and weights.content_max == 0):
            items = np.arange(self.n_items, dtype=np.int64)
            return self._scored(items, base, features, np.zeros((self.n_items, 2), np.float32))
        profile = self.content.profile(history, self.history_weights(len(history)))
        recent = self.content.embeddings[history[-self.params.recent :]]
        if self.content.exact:
            items = np.arange(self.n_items, dtype=np.int64)
        else:
            chosen = np.zeros(self.n_items, dtype=bool)
            chosen[self.content.shortlist(np.vstack([profile, recent[-1]]), size=shortlist)] = True
            chosen[np.argpartition(-base, shortlist - 1)[:shortlist]] = True
            items = np.flatnonzero(chosen)
        sims = self.content.similarity(items, np.vstack([profile, recent]))
        content = np.stack([sims[:, 0], sims[:, 1:].max(axis=1)], axis=1)
        total: FloatArray = (
            base[items] + weights.content * content[:, 0] + weights.content_max * content[:, 1]
        ).astype(np.float32)
        return self._scored(items, total, features[items], content)

    def _scored(
        self, items: IntArray, scores: FloatArray, history: FloatArray, content: FloatArray
    ) -> Scored:
        table = np.column_stack(
            [history, content, self.log_counts[items], self.log_trend[items]]
        ).astype(np.float32)
        return Scored(items, scores.astype(np.float32), table)
