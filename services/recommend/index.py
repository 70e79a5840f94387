"""The in-memory index of one catalog snapshot: the hybrid model plus what explains it."""

from __future__ import annotations

import functools
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from services.recommend.model import HybridModel, Params, Weights
from services.recommend.signals import FloatArray, Histories, IntArray
from storage.catalog import CatalogSnapshot, CatalogStamp


@dataclass(frozen=True, slots=True)
class Pick:
    """One recommended product (an index position) and why, in a few words."""

    position: int
    reason: str


class CatalogIndex:
    """Products by position (ascending product id), and the model fitted on all purchases."""

    def __init__(
        self,
        product_ids: IntArray,
        titles: list[str],
        model: HybridModel,
        *,
        stamp: CatalogStamp | None = None,
    ) -> None:
        self.product_ids = product_ids
        self.titles = titles
        self.model = model
        self.stamp = stamp

    @classmethod
    def build(
        cls, snapshot: CatalogSnapshot, *, params: Params, previous: CatalogIndex | None = None
    ) -> CatalogIndex:
        """``previous``: the index this one replaces; its content index is reused when only
        purchases changed, since clustering a big catalog's embeddings takes seconds."""
        ids = snapshot.product_ids
        embeddings = decode_embeddings(snapshot.embeddings)
        content = None
        if previous is not None and previous.stamp is not None:
            same = (previous.stamp.last_product, previous.stamp.last_update) == (
                snapshot.stamp.last_product,
                snapshot.stamp.last_update,
            )
            if same and len(previous) == len(ids):
                content = previous.model.content
        positions = np.searchsorted(ids, snapshot.purchase_products)
        users = snapshot.purchase_users
        # Purchases come grouped by user: a history starts wherever the user id changes.
        changes = np.flatnonzero(users[1:] != users[:-1]) + 1
        starts = np.r_[0, changes, len(users)] if len(users) else np.zeros(1)
        histories = Histories(starts.astype(np.int64), positions.astype(np.int64))
        model = HybridModel.fit(histories, embeddings, params=params, content=content)
        return cls(ids, snapshot.titles, model, stamp=snapshot.stamp)

    def __len__(self) -> int:
        return len(self.product_ids)

    def positions(self, product_ids: list[int]) -> IntArray:
        """Index positions of known products, in the given order (unknown ones dropped)."""
        wanted = np.asarray(product_ids, dtype=np.int64)
        if len(self.product_ids) == 0 or len(wanted) == 0:
            return np.zeros(0, dtype=np.int64)
        found = np.minimum(np.searchsorted(self.product_ids, wanted), len(self.product_ids) - 1)
        positions: IntArray = found[self.product_ids[found] == wanted].astype(np.int64)
        return positions

    def popular(self, n: int, *, exclude: IntArray) -> list[Pick]:
        """Best-sellers: all-time purchases, ties broken by recent ones."""
        order = np.lexsort((-self.model.log_trend, -self.model.counts))
        order = order[~np.isin(order, exclude)][:n]
        return [Pick(int(p), _bought_by(int(self.model.counts[p]))) for p in order]

    def recommend(self, history: IntArray, n: int, *, weights: Weights) -> list[Pick]:
        with single_threaded_blas():
            return self._recommend(history, n, weights=weights)

    def _recommend(self, history: IntArray, n: int, *, weights: Weights) -> list[Pick]:
        scored = self.model.score(history, weights)
        keep = ~np.isin(scored.items, history)
        items, scores, features = scored.items[keep], scored.scores[keep], scored.features[keep]
        k = min(n, len(items))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k] if len(items) > k else np.arange(k)
        top = top[np.argsort(-scores[top], kind="stable")]
        explain = _Explainer(self, history, weights)
        return [Pick(int(items[t]), explain.reason(int(items[t]), features[t])) for t in top]


class _Explainer:
    """Finds, for a recommended product, the purchase it is best explained by."""

    def __init__(self, index: CatalogIndex, history: IntArray, weights: Weights) -> None:
        self.index = index
        self.history = history
        self.weights = weights.array()
        model = index.model
        self.history_weights = model.history_weights(len(history))
        self.direct = model.similarity[history] if len(history) else None
        self._two_hop: sp.csc_matrix | None = None

    def reason(self, item: int, row: FloatArray) -> str:
        w = self.weights
        groups = {
            "together": float(row[:2] @ w[:2]),
            "similar": float(row[2:4] @ w[2:4]),
            "popular": float(row[4:] @ w[4:]),
        }
        kind = max(groups, key=lambda k: groups[k])
        titles = self.index.titles
        if kind == "together" and (source := self._bought_with(item)) is not None:
            return f"because you bought {titles[source]}"
        if kind != "popular" and (source := self._most_similar(item)) is not None:
            return f"similar to {titles[source]}, which you bought"
        return _bought_by(int(self.index.model.counts[item]))

    def _bought_with(self, item: int) -> int | None:
        """The purchase linked most strongly to ``item``, directly or through one product."""
        if self.direct is None:
            return None
        links = self.history_weights * self.direct[:, [item]].toarray().ravel()
        if links.max(initial=0) <= 0:
            if self._two_hop is None:
                self._two_hop = (self.direct @ self.index.model.similarity).tocsc()
            links = self.history_weights * self._two_hop[:, [item]].toarray().ravel()
        if links.max(initial=0) <= 0:
            return None
        return int(self.history[int(np.argmax(links))])

    def _most_similar(self, item: int) -> int | None:
        content = self.index.model.content
        recent = self.history[-self.index.model.params.recent :]
        if len(recent) == 0:
            return None
        sims = content.similarity(recent, content.embeddings[[item]]).ravel()
        if sims.max(initial=0) <= 0:
            return None
        return int(recent[int(np.argmax(sims))])


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def single_threaded_blas() -> AbstractContextManager[object]:
    """A query's matrix products are small: BLAS threads would only wait for each other (and
    on a busy machine, for a free core), which costs more than the products themselves."""
    return _blas().limit(limits=1, user_api="blas")  # type: ignore[no-any-return]


def _bought_by(purchases: int) -> str:
    if purchases == 0:
        return "new in the catalog"
    return "popular: bought once" if purchases == 1 else f"popular: bought {purchases} times"


def decode_embeddings(rows: list[bytes | None]) -> FloatArray:
    """Stored float32 rows as a matrix; a missing or odd-sized one (a product embedded by
    another model) becomes a zero row, which content similarity simply ignores."""
    sizes = Counter(len(r) for r in rows if r)
    width = sizes.most_common(1)[0][0] // 4 if sizes else 1
    if sizes.get(width * 4, 0) == len(rows):  # the usual case: one model embedded everything
        joined = b"".join(r or b"" for r in rows)
        return np.frombuffer(joined, dtype="<f4").reshape(len(rows), width).copy()
    matrix = np.zeros((len(rows), width), dtype=np.float32)
    for i, row in enumerate(rows):
        if row and len(row) == width * 4:
            matrix[i] = np.frombuffer(row, dtype="<f4")
    return matrix
