"""Catalog and purchase repositories on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from bot.migrate import upgrade_async
from storage import catalog as repo
from storage.db import SessionFactory, create_engine, session_factory, unit_of_work


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


def product(external_id: str, title: str, **fields: object) -> repo.NewProduct:
    return repo.NewProduct(external_id, title, **fields)  # type: ignore[arg-type]


async def test_upsert_updates_known_ids_and_keeps_one_row_per_id(sessions: SessionFactory) -> None:
    async with unit_of_work(sessions) as session:
        await repo.upsert_products(
            session,
            products=[product("a", "Old"), product("b", "Bee"), product("a", "Newer in batch")],
        )
    async with unit_of_work(sessions) as session:
        before = await repo.catalog_stamp(session)
        await repo.upsert_products(session, products=[product("a", "Renamed", price=2.5)])
    async with unit_of_work(sessions) as session:
        renamed = await repo.product_by_external_id(session, external_id="a")
        assert renamed is not None and (renamed.title, renamed.price) == ("Renamed", 2.5)
        assert await repo.product_ids(session, external_ids=["a", "b", "zz"]) == {
            "a": renamed.id,
            "b": renamed.id + 1,
        }
        after = await repo.catalog_stamp(session)
    # A re-import adds no row but must still tell the recommender's index it is stale.
    assert after.last_product == before.last_product and after != before


async def test_title_search_puts_exact_matches_first_and_escapes_wildcards(
    sessions: SessionFactory,
) -> None:
    async with unit_of_work(sessions) as session:
        await repo.upsert_products(
            session,
            products=[
                product("1", "Wireless Mouse Pro"),
                product("2", "Mouse"),
                product("3", "100% Cotton Shirt"),
                product("4", "Mouse pad"),
            ],
        )
    async with unit_of_work(sessions) as session:
        found = await repo.products_by_title(session, text="MOUSE")
        assert [p.external_id for p in found] == ["2", "4", "1"]
        assert [p.external_id for p in await repo.products_by_title(session, text="0%")] == ["3"]
        assert await repo.products_by_title(session, text="_") == []


async def test_purchases_snapshot_in_order_and_duplicates_skipped(
    sessions: SessionFactory,
) -> None:
    async with unit_of_work(sessions) as session:
        await repo.upsert_products(session, products=[product("a", "A"), product("b", "B")])
        ids = await repo.product_ids(session, external_ids=["a", "b"])
        users = await repo.user_ids(session, users=[("slack", "U1"), ("telegram", "7")])
        first, second = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC)
        rows = [
            repo.NewPurchase(users[("slack", "U1")], ids["b"], second),
            repo.NewPurchase(users[("slack", "U1")], ids["a"], first),
            repo.NewPurchase(users[("telegram", "7")], ids["a"], first),
        ]
        assert await repo.add_purchases(session, purchases=rows) == 3
        assert await repo.add_purchases(session, purchases=rows[:1]) == 0  # stored: skipped
    async with unit_of_work(sessions) as session:
        assert await repo.user_ids(session, users=[("slack", "U1")]) == {
            ("slack", "U1"): users[("slack", "U1")]
        }
        snapshot = await repo.catalog_snapshot(session, batch=2)
        history = await repo.purchase_history(session, user_id=users[("slack", "U1")])
    assert snapshot.titles == ["A", "B"]
    assert snapshot.purchase_products.tolist() == [ids["a"], ids["b"], ids["a"]]
    assert snapshot.purchase_users.tolist() == [
        users[("slack", "U1")],
        users[("slack", "U1")],
        users[("telegram", "7")],
    ]
    assert history == [ids["a"], ids["b"]]
