"""Catalog and purchase repositories: keyword-only functions over an `AsyncSession`.
They never commit. Bulk functions take whole batches, so an import makes one round trip per
batch rather than one per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Base, Product, Purchase, User, utcnow

CHUNK = 500  # ids per IN (...) clause, well under every driver's parameter limit


@dataclass(frozen=True, slots=True)
class NewProduct:
    external_id: str
    title: str
    description: str = ""
    category: str = ""
    price: float | None = None
    url: str | None = None
    embedding: bytes | None = None


@dataclass(frozen=True, slots=True)
class NewPurchase:
    user_id: int
    product_id: int
    purchased_at: datetime
    source: str = "import"


@dataclass(frozen=True, slots=True)
class CatalogStamp:
    """Changes whenever a product or purchase is added or a product re-imported."""

    last_product: int
    last_update: datetime | None
    last_purchase: int


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    """What the recommender's in-memory index is built from."""

    product_ids: np.ndarray  # int64, ascending
    titles: list[str]
    embeddings: list[bytes | None]
    purchase_users: np.ndarray  # int64, grouped by user, oldest first within a user
    purchase_products: np.ndarray  # int64 product ids, aligned with purchase_users
    stamp: CatalogStamp


def _insert(session: AsyncSession, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


# --- products ----------------------------------------------------------------------------


async def upsert_products(session: AsyncSession, *, products: Sequence[NewProduct]) -> None:
    """Insert new products; a known external id gets the new title, text and embedding."""
    latest = {p.external_id: p for p in products}  # one row per id, or PostgreSQL refuses
    if not latest:
        return
    now = utcnow()
    rows = [
        {
            "external_id": p.external_id,
            "title": p.title,
            "description": p.description,
            "category": p.category,
            "price": p.price,
            "url": p.url,
            "embedding": p.embedding,
            "created_at": now,
            "updated_at": now,
        }
        for p in latest.values()
    ]
    statement = _insert(session, Product)
    changed = {
        name: getattr(statement.excluded, name)
        for name in ("title", "description", "category", "price", "url", "embedding", "updated_at")
    }
    await session.execute(
        statement.on_conflict_do_update(index_elements=["external_id"], set_=changed), rows
    )


async def product_ids(session: AsyncSession, *, external_ids: Sequence[str]) -> dict[str, int]:
    wanted = list(dict.fromkeys(external_ids))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), CHUNK):
        result = await session.execute(
            select(Product.external_id, Product.id).where(
                Product.external_id.in_(wanted[start : start + CHUNK])
            )
        )
        found.update({external: id_ for external, id_ in result.tuples()})
    return found


async def get_product(session: AsyncSession, *, product_id: int) -> Product | None:
    return await session.get(Product, product_id)


async def product_by_external_id(session: AsyncSession, *, external_id: str) -> Product | None:
    return await session.scalar(select(Product).where(Product.external_id == external_id))


async def products_by_title(session: AsyncSession, *, text: str, limit: int = 10) -> list[Product]:
    """Products whose title equals ``text`` (ignoring case) first, then those containing it,
    shortest titles first."""
    needle = text.strip().lower()
    if not needle:
        return []
    title = func.lower(Product.title)
    result = await session.scalars(
        select(Product)
        .where(title.contains(needle, autoescape=True))
        .order_by((title != needle), func.length(Product.title), Product.id)
        .limit(limit)
    )
    return list(result.all())


async def products_by_ids(session: AsyncSession, *, ids: Sequence[int]) -> dict[int, Product]:
    found: dict[int, Product] = {}
    for start in range(0, len(ids), CHUNK):
        rows = await session.scalars(
            select(Product).where(Product.id.in_(ids[start : start + CHUNK]))
        )
        found.update({p.id: p for p in rows.all()})
    return found


# --- users and purchases ----------------------------------------------------------------


async def user_ids(
    session: AsyncSession, *, users: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """Ids of (platform, external id) users, creating the ones not seen before."""
    wanted = list(dict.fromkeys(users))
    if not wanted:
        return {}
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {"platform": p, "external_id": e, "created_at": now} for p, e in wanted
    ]
    await session.execute(_insert(session, User).on_conflict_do_nothing(), rows)
    found: dict[tuple[str, str], int] = {}
    for start in range(0, len(wanted), CHUNK):
        result = await session.execute(
            select(User.platform, User.external_id, User.id).where(
                tuple_(User.platform, User.external_id).in_(wanted[start : start + CHUNK])
            )
        )
        found.update({(p, e): id_ for p, e, id_ in result.tuples()})
    return found


async def add_purchases(session: AsyncSession, *, purchases: Sequence[NewPurchase]) -> int:
    """Insert purchases; one already stored (same user, product and time) is skipped. Returns
    how many were new."""
    if not purchases:
        return 0
    rows = [
        {
            "user_id": p.user_id,
            "product_id": p.product_id,
            "purchased_at": p.purchased_at,
            "source": p.source,
        }
        for p in purchases
    ]
    statement = _insert(session, Purchase).on_conflict_do_nothing().returning(Purchase.id)
    return len((await session.execute(statement, rows)).all())


async def record_purchase(
    session: AsyncSession, *, user_id: int, product_id: int, source: str = "chat"
) -> Purchase:
    purchase = Purchase(
        user_id=user_id, product_id=product_id, purchased_at=utcnow(), source=source
    )
    session.add(purchase)
    await session.flush()
    return purchase


async def user_purchases(
    session: AsyncSession, *, user_id: int, limit: int | None = None
) -> list[tuple[Purchase, Product]]:
    """A user's purchases with their products, newest first."""
    query = (
        select(Purchase, Product)
        .join(Product, Product.id == Purchase.product_id)
        .where(Purchase.user_id == user_id)
        .order_by(Purchase.purchased_at.desc(), Purchase.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    result = await session.execute(query)
    return [(purchase, product) for purchase, product in result.tuples()]


async def purchase_history(session: AsyncSession, *, user_id: int) -> list[int]:
    """The product ids a user bought, oldest first."""
    result = await session.scalars(
        select(Purchase.product_id)
        .where(Purchase.user_id == user_id)
        .order_by(Purchase.purchased_at, Purchase.id)
    )
    return list(result.all())


async def count_purchases(session: AsyncSession, *, user_id: int) -> int:
    return int(
        await session.scalar(select(func.count(Purchase.id)).where(Purchase.user_id == user_id))
        or 0
    )


# --- the recommender's index -------------------------------------------------------------


async def catalog_stamp(session: AsyncSession) -> CatalogStamp:
    """Three index-only maxima in one round trip: cheap enough for every recommendation."""
    row = (
        await session.execute(
            select(
                select(func.max(Product.id)).scalar_subquery(),
                select(func.max(Product.updated_at)).scalar_subquery(),
                select(func.max(Purchase.id)).scalar_subquery(),
            )
        )
    ).one()
    last_product, last_update, last_purchase = row
    return CatalogStamp(int(last_product or 0), last_update, int(last_purchase or 0))


async def catalog_snapshot(session: AsyncSession, *, batch: int = 20_000) -> CatalogSnapshot:
    """Every product and every purchase, streamed in batches (a million purchases fit)."""
    stamp = await catalog_stamp(session)
    ids: list[int] = []
    titles: list[str] = []
    embeddings: list[bytes | None] = []
    products = await session.stream(
        select(Product.id, Product.title, Product.embedding)
        .order_by(Product.id)
        .execution_options(yield_per=batch)
    )
    async for rows in products.partitions():
        for id_, title, embedding in rows:
            ids.append(id_)
            titles.append(title)
            embeddings.append(embedding)
    users: list[np.ndarray] = []
    bought: list[np.ndarray] = []
    purchases = await session.stream(
        select(Purchase.user_id, Purchase.product_id)
        .order_by(Purchase.user_id, Purchase.purchased_at, Purchase.id)
        .execution_options(yield_per=batch)
    )
    async for chunk in purchases.partitions():
        pairs = np.array([tuple(r) for r in chunk], dtype=np.int64).reshape(-1, 2)
        users.append(pairs[:, 0])
        bought.append(pairs[:, 1])
    empty = np.zeros(0, dtype=np.int64)
    return CatalogSnapshot(
        np.array(ids, dtype=np.int64),
        titles,
        embeddings,
        np.concatenate(users) if users else empty,
        np.concatenate(bought) if bought else empty,
        stamp,
    )
