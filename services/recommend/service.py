"""The recommender the chat handlers use: finds products and recommends, over the store.

The in-memory index is rebuilt when the catalog or the purchases change (checked with three
cheap reads per request), at most every ``rebuild_every`` seconds, because a rebuild over a
million purchases takes seconds. The user's own history is always read fresh, so whatever they
just bought is never recommended, even from a slightly stale index.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from services.recommend.index import CatalogIndex, Pick
from services.recommend.model import Params, Weights
from services.recommend.rerank import Reranker
from services.types import Embedder, ProviderError, unreadable
from storage import catalog as repo

log = logging.getLogger(__name__)

# Chosen by `switchboard eval recommend` on the Amazon Games validation users (odd ids): the
# shop-like dataset. Only the ratios matter.
DEFAULT_PARAMS = Params()  # window 20, decay 0.8, 500 neighbours, recency 0.7
DEFAULT_WEIGHTS = Weights(
    cooc=1.0, hop2=11.4, content=0.2813, content_max=1.0, popularity=-0.4, trend=0.5
)


@dataclass(frozen=True, slots=True)
class ProductRef:
    id: int
    title: str


@dataclass(frozen=True, slots=True)
class Match:
    """Products a /buy query may mean; ``sure`` when exactly one fits well enough to record."""

    products: list[ProductRef]
    sure: bool


@dataclass(frozen=True, slots=True)
class Suggestion:
    product: ProductRef
    reason: str


@dataclass(frozen=True, slots=True)
class Recommendations:
    suggestions: list[Suggestion]
    # True when the user has no history the index knows: the suggestions are best-sellers.
    popular: bool


class Recommender:
    """Product search and purchase-history recommendations for one store."""

    def __init__(
        self,
        embedder: Embedder | None,
        *,
        params: Params = DEFAULT_PARAMS,
        weights: Weights = DEFAULT_WEIGHTS,
        reranker: Reranker | None = None,
        rebuild_every: float = 60.0,
        min_similarity: float = 0.35,
        similarity_margin: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._embedder = embedder
        self._params = params
        self._weights = weights
        self._reranker = reranker
        self._rebuild_every = rebuild_every
        self._min_similarity = min_similarity
        self._margin = similarity_margin
        self._clock = clock
        self._index: CatalogIndex | None = None
        self._built_at = 0.0
        self._lock = asyncio.Lock()

    async def index(self, session: AsyncSession, *, fresh: bool = False) -> CatalogIndex:
        """The current index, rebuilt first if the store changed (and the last build is old,
        unless ``fresh``)."""
        stamp = await repo.catalog_stamp(session)
        if self._index is not None and (
            self._index.stamp == stamp
            or (not fresh and self._clock() - self._built_at < self._rebuild_every)
        ):
            return self._index
        async with self._lock:
            if self._index is None or self._index.stamp != stamp:
                snapshot = await repo.catalog_snapshot(session)
                started = self._clock()
                self._index = await asyncio.to_thread(
                    CatalogIndex.build, snapshot, params=self._params, previous=self._index
                )
                self._built_at = self._clock()
                log.info(
                    "recommendation index: %d products, %d purchases, built in %.1f s",
                    len(snapshot.product_ids),
                    len(snapshot.purchase_products),
                    self._built_at - started,
                )
            return self._index

    # --- /buy --------------------------------------------------------------------------------

    async def find(self, session: AsyncSession, query: str, *, limit: int = 5) -> Match:
        """By exact id, then by name, then by meaning (the embeddings)."""
        query = query.strip()
        exact = await repo.product_by_external_id(session, external_id=query)
        if exact is not None:
            return Match([ProductRef(exact.id, exact.title)], sure=True)
        named = await repo.products_by_title(session, text=query, limit=limit + 1)
        same = [p for p in named if p.title.lower() == query.lower()]
        if len(same) == 1 or len(named) == 1:
            chosen = same[0] if same else named[0]
            return Match([ProductRef(chosen.id, chosen.title)], sure=True)
        if named:
            return Match([ProductRef(p.id, p.title) for p in named[:limit]], sure=False)
        meant = await self._by_meaning(session, query, limit=limit)
        return Match(meant, sure=len(meant) == 1)

    async def _by_meaning(
        self, session: AsyncSession, query: str, *, limit: int
    ) -> list[ProductRef]:
        if self._embedder is None:
            return []
        index = await self.index(session)
        if len(index) == 0:
            return []
        vector = (await self._embedder.embed([query]))[0]
        if unreadable(self._embedder, query):  # after embed(), which loads the model off the loop
            return []
        content = index.model.content
        if content.embeddings.shape[1] != len(vector):
            log.warning(
                "the catalog was embedded with %d dimensions, EMBEDDING_MODEL gives %d: run "
                "`switchboard catalog import` again to find products by meaning",
                content.embeddings.shape[1],
                len(vector),
            )
            return []
        sims = content.embeddings @ vector
        top = np.argsort(-sims)[:limit]
        best = float(sims[top[0]])
        keep = [int(t) for t in top if sims[t] >= max(self._min_similarity, best - self._margin)]
        return [ProductRef(int(index.product_ids[t]), index.titles[t]) for t in keep]

    # --- /recommend --------------------------------------------------------------------------

    async def recommend(self, session: AsyncSession, *, user_id: int, n: int) -> Recommendations:
        index = await self.index(session)
        bought = await repo.purchase_history(session, user_id=user_id)
        history = index.positions(bought)
        if len(history) < len(set(bought)):
            # A product newer than the index (imported, then bought, within the rebuild
            # interval): the user's own history must count, so the index catches up now.
            index = await self.index(session, fresh=True)
            history = index.positions(bought)
        if len(history) == 0:
            picks = index.popular(n, exclude=history)
            return Recommendations([self._suggestion(index, p) for p in picks], popular=True)
        picks = index.recommend(
            history, n if self._reranker is None else 3 * n, weights=self._weights
        )
        if self._reranker is not None:
            picks = await self._rerank(index, history, picks, n=n)
        return Recommendations([self._suggestion(index, p) for p in picks[:n]], popular=False)

    async def _rerank(
        self, index: CatalogIndex, history: np.ndarray, picks: list[Pick], *, n: int
    ) -> list[Pick]:
        assert self._reranker is not None
        try:
            order = await self._reranker.rerank(
                [index.titles[int(p)] for p in history],
                [index.titles[p.position] for p in picks],
                n=n,
            )
        except (ProviderError, TimeoutError, OSError) as exc:
            log.warning("re-ranking failed, keeping the hybrid's order: %r", exc)
            return picks
        chosen = [Pick(picks[i].position, reason or picks[i].reason) for i, reason in order]
        taken = {i for i, _ in order}
        return chosen + [p for i, p in enumerate(picks) if i not in taken]

    @staticmethod
    def _suggestion(index: CatalogIndex, pick: Pick) -> Suggestion:
        product = ProductRef(int(index.product_ids[pick.position]), index.titles[pick.position])
        return Suggestion(product, pick.reason)
