"""Speed of /recommend over a synthetic 100,000-product / 1,000,000-purchase store, and of
`catalog import` of 100,000 products.

    .venv/bin/python bench/recommend_speed.py            # everything (a few minutes)
    .venv/bin/python bench/recommend_speed.py --skip-import

Recommendation latency is measured on the in-memory index (what /recommend runs after its two
indexed reads of the store), beside a naive full-scan scorer that computes the same kind of
signals from the raw purchase table on every request. The import uses random embeddings so that
parsing, batching and SQL are timed on their own; the real embedding model's throughput is
measured on a sample and reported separately, with the extrapolated total.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from services.recommend.index import CatalogIndex
from services.recommend.model import HybridModel
from services.recommend.service import DEFAULT_PARAMS, DEFAULT_WEIGHTS
from services.recommend.signals import Histories
from storage.db import SessionFactory

DIM = 384


def synthetic_store(
    products: int, purchases: int, *, seed: int = 0
) -> tuple[Histories, NDArray[np.float32]]:
    """Users with a taste (one of 200 clusters of products) buy mostly inside it, and some
    best-sellers; popularity is Zipf-like. Embeddings are cluster centre plus noise."""
    rng = np.random.default_rng(seed)
    clusters = 200
    per_user = 10
    users = purchases // per_user
    cluster_of = rng.integers(0, clusters, products)
    members = [np.flatnonzero(cluster_of == c) for c in range(clusters)]
    centres = rng.normal(size=(clusters, DIM)).astype(np.float32)
    vectors = centres[cluster_of] + 0.8 * rng.normal(size=(products, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    taste = rng.zipf(1.3, users) % clusters
    popular = rng.permutation(products)
    items = np.empty((users, per_user), dtype=np.int64)
    for c in range(clusters):
        who = np.flatnonzero(taste == c)
        pool = members[c]
        rank = np.minimum(rng.zipf(1.5, (len(who), 7)) - 1, len(pool) - 1)
        items[who, :7] = pool[rank]
    items[:, 7:] = popular[np.minimum(rng.zipf(1.4, (users, 3)) - 1, products - 1)]
    rng.permuted(items, axis=1, out=items)
    return Histories.of(list(items)), vectors


def naive_scores(
    history: NDArray[np.int64],
    users: NDArray[np.int64],
    items: NDArray[np.int64],
    embeddings: NDArray[np.float32],
    counts: NDArray[np.float32],
) -> NDArray[np.float32]:
    """No index: scan every purchase for co-buyers, every embedding for content."""
    co_buyers = np.unique(users[np.isin(items, history)])
    together = np.bincount(items[np.isin(users, co_buyers)], minlength=len(counts))
    profile = embeddings[history].mean(axis=0)
    scores: NDArray[np.float32] = (
        np.log1p(together.astype(np.float32)) + embeddings @ profile + 0.1 * np.log1p(counts)
    ).astype(np.float32)
    scores[history] = -np.inf
    return scores


def percentiles(seconds: Sequence[float]) -> str:
    p50, p95, p99 = np.percentile(np.array(seconds) * 1000, [50, 95, 99])
    return f"p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   p99 {p99:6.1f} ms"


def bench_recommend(products: int, purchases: int, queries: int) -> Histories:
    started = time.perf_counter()
    histories, embeddings = synthetic_store(products, purchases)
    print(
        f"synthetic store: {products:,} products, {len(histories.items):,} purchases, "
        f"{len(histories):,} users ({time.perf_counter() - started:.1f} s)"
    )
    started = time.perf_counter()
    model = HybridModel.fit(histories, embeddings, params=DEFAULT_PARAMS)
    index = CatalogIndex(
        np.arange(products, dtype=np.int64), [f"p{i}" for i in range(products)], model
    )
    print(
        f"index build: {time.perf_counter() - started:.1f} s "
        f"({model.similarity.nnz:,} item-item links kept)"
    )

    rng = np.random.default_rng(1)
    who = rng.choice(len(histories), queries, replace=False)
    starts, ends = histories.indptr[who], histories.indptr[who + 1]
    asked = [histories.items[s:e] for s, e in zip(starts, ends, strict=True)]
    for history in asked[:5]:  # warm-up
        index.recommend(history, 10, weights=DEFAULT_WEIGHTS)
    fast: list[float] = []
    for history in asked:
        t = time.perf_counter()
        picks = index.recommend(history, 10, weights=DEFAULT_WEIGHTS)
        fast.append(time.perf_counter() - t)
        assert len(picks) == 10 and not set(p.position for p in picks) & set(history.tolist())

    users = histories.user_of_position()
    slow: list[float] = []
    for history in asked[: max(20, queries // 10)]:
        t = time.perf_counter()
        scores = naive_scores(history, users, histories.items, embeddings, model.counts)
        np.argpartition(-scores, 10)[:10]
        slow.append(time.perf_counter() - t)
    print(f"\n/recommend n=10, {len(fast)} users")
    print(f"  hybrid, in-memory index   {percentiles(fast)}")
    print(f"  naive full scan (baseline) {percentiles(slow)}   ({len(slow)} users)")
    ratio = np.percentile(slow, 95) / np.percentile(fast, 95)
    print(
        f"  p95 speed-up: {ratio:.1f}x; goal p95 < 50 ms: "
        f"{'met' if np.percentile(fast, 95) < 0.05 else 'NOT met'}"
    )
    return histories


class RandomEmbedder:
    """Instant random unit vectors: times the import without the model."""

    name = "random"
    dim = DIM

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)

    async def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        vectors = self._rng.normal(size=(len(texts), DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors


def write_catalog(path: Path, rows: int) -> None:
    rng = np.random.default_rng(2)
    words = [
        "wireless",
        "mouse",
        "garden",
        "hose",
        "lamp",
        "desk",
        "cotton",
        "shirt",
        "steel",
        "bottle",
        "game",
        "console",
        "cable",
        "charger",
        "book",
        "recipe",
        "chair",
        "pad",
    ]
    with path.open("w", encoding="utf-8") as file:
        file.write("id,title,description,category,price,url\n")
        for i in range(rows):
            title = " ".join(rng.choice(words, 3)).capitalize()
            description = " ".join(rng.choice(words, 12))
            file.write(
                f"sku-{i},{title} {i},{description},Category {i % 50},{i % 997}.99,"
                f"https://shop.example/p/{i}\n"
            )


async def bench_end_to_end(sessions: SessionFactory, histories: Histories, queries: int) -> None:
    """The whole /recommend path on SQLite: staleness check, the user's history, scoring."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert, select

    from services.recommend.service import Recommender
    from storage.db import unit_of_work
    from storage.models import Product, Purchase, User

    start = datetime(2025, 1, 1, tzinfo=UTC)
    users = histories.user_of_position()
    step = np.arange(len(users)) - np.repeat(histories.indptr[:-1], np.diff(histories.indptr))
    started = time.perf_counter()
    async with unit_of_work(sessions) as session:
        ids = np.array((await session.scalars(select(Product.id).order_by(Product.id))).all())
        people = [
            {"id": u + 1, "platform": "bench", "external_id": str(u), "created_at": start}
            for u in range(len(histories))
        ]
        await session.execute(insert(User), people)
    for chunk in np.array_split(np.arange(len(users)), 10):
        rows = [
            {
                "user_id": int(users[i]) + 1,
                "product_id": int(ids[histories.items[i]]),
                "purchased_at": start + timedelta(minutes=int(step[i])),
                "source": "import",
            }
            for i in chunk
        ]
        async with unit_of_work(sessions) as session:
            await session.execute(insert(Purchase), rows)
    print(
        f"\nend to end on SQLite: {len(users):,} purchases written in "
        f"{time.perf_counter() - started:.0f} s"
    )
    recommender = Recommender(None)
    started = time.perf_counter()
    async with unit_of_work(sessions) as session:
        await recommender.index(session)
    print(f"  index loaded from the store and built: {time.perf_counter() - started:.1f} s")
    rng = np.random.default_rng(3)
    seconds: list[float] = []
    for user in rng.choice(len(histories), queries, replace=False):
        t = time.perf_counter()
        async with unit_of_work(sessions) as session:
            result = await recommender.recommend(session, user_id=int(user) + 1, n=10)
        seconds.append(time.perf_counter() - t)
        assert len(result.suggestions) == 10 and not result.popular
    print(f"  Recommender.recommend, {queries} users  {percentiles(seconds)}")


async def bench_import(rows: int, sample: int, histories: Histories | None) -> None:
    from tqdm import tqdm

    from bot.migrate import upgrade_async
    from services.recommend.importing import import_products
    from storage.db import create_engine, session_factory

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "catalog.csv"
        write_catalog(path, rows)
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await upgrade_async(url)
        engine = create_engine(url)
        started = time.perf_counter()
        with tqdm(total=rows, unit=" rows", mininterval=2.0) as bar:
            report = await import_products(
                path,
                sessions=session_factory(engine),
                embedder=RandomEmbedder(),
                progress=bar.update,
            )
        seconds = time.perf_counter() - started
        rate = report.imported / seconds
        print(
            f"\ncatalog import of {report.imported:,} products (random embeddings): "
            f"{seconds:.0f} s ({rate:,.0f} rows/s), of which embedding {report.embed_seconds:.1f} s"
        )
        if histories is not None and int(histories.items.max()) < report.imported:
            await bench_end_to_end(session_factory(engine), histories, 300)
        await engine.dispose()

    import torch

    from services.providers.local_embeddings import LocalEmbedder

    torch.set_num_threads(1)  # a shared machine; more threads scale this up
    embedder = LocalEmbedder(device="cpu")
    texts = [
        f"Wireless garden lamp {i}. Category {i % 50}. steel bottle game console cable"
        for i in range(sample)
    ]
    await embedder.embed(texts[:64])  # load the model
    started = time.perf_counter()
    for i in range(0, sample, 256):
        await embedder.embed(texts[i : i + 256])
    rate = sample / (time.perf_counter() - started)
    print(
        f"embedding with all-MiniLM-L6-v2, 1 CPU thread: {rate:,.0f} texts/s on {sample:,} "
        f"texts -> {rows / rate / 60:.1f} min for {rows:,} products, plus the import above"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--import-rows", type=int, default=100_000)
    parser.add_argument("--embed-sample", type=int, default=2000)
    parser.add_argument("--skip-import", action="store_true")
    args = parser.parse_args()
    histories = bench_recommend(args.products, args.purchases, args.queries)
    if not args.skip_import:
        asyncio.run(bench_import(args.import_rows, args.embed_sample, histories))


if __name__ == "__main__":
    main()
