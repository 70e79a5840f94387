"""Catalog and purchase imports: both formats, bad rows reported by line, good rows kept."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from bot.settings import Settings
from services.recommend.importing import import_products, import_purchases
from services.recommend.parsing import FileFormatError
from storage.db import SessionFactory, create_engine, session_factory, unit_of_work
from storage.models import Product, Purchase, User
from tests.fakes.embedder import FakeEmbedder

PRODUCTS_CSV = """id,title,description,category,price,url
sku-1,Wireless Mouse,Two buttons,Computers,19.90,https://shop.example/mouse
sku-2,,No title here,Computers,5,
sku-3,Keyboard,"A description
over two lines",Computers,abc,
sku-4,Mouse Pad,,Computers,$5.00,ftp://nope
sku-5,Desk Lamp,,Home,,
"""
PRODUCTS_JSONL = "\n".join(
    [
        json.dumps({"id": "sku-6", "title": "Garden Hose", "price": 30}),
        "{not json",
        json.dumps({"title": "Missing id"}),
        "",
        json.dumps(["a", "list"]),
        json.dumps({"ID": "sku-7", "Title": "Rake", "category": "Garden", "price": -1}),
        json.dumps({"id": "sku-8", "title": "Spade", "category": "Garden"}),
    ]
)


@pytest.fixture
async def sessions(migrated: Settings) -> AsyncIterator[SessionFactory]:
    engine = create_engine(migrated.db_url)
    yield session_factory(engine)
    await engine.dispose()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def count(sessions: SessionFactory, model: type[Product] | type[Purchase]) -> int:
    async with unit_of_work(sessions) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_product_csv_reports_bad_rows_by_line_and_keeps_the_good(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    embedder = FakeEmbedder(dim=16)
    report = await import_products(
        write(tmp_path, "catalog.csv", PRODUCTS_CSV), sessions=sessions, embedder=embedder
    )
    assert report.imported == 2
    # The keyboard's quoted description spans lines 4-5: its row is reported at line 4.
    assert [str(e) for e in report.errors] == [
        "line 3: title is missing",
        "line 4: price 'abc' is not a number",
        "line 6: url 'ftp://nope' does not start with http:// or https://",
    ]
    async with unit_of_work(sessions) as session:
        products = (await session.scalars(select(Product).order_by(Product.id))).all()
    assert [(p.external_id, p.price, p.category) for p in products] == [
        ("sku-1", 19.9, "Computers"),
        ("sku-5", None, "Home"),
    ]
    vector = np.frombuffer(products[0].embedding or b"", dtype="<f4")
    assert vector.shape == (16,) and np.isclose(np.linalg.norm(vector), 1.0)


async def test_product_json_lines_report_bad_rows_by_line(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    report = await import_products(
        write(tmp_path, "catalog.jsonl", PRODUCTS_JSONL),
        sessions=sessions,
        embedder=FakeEmbedder(),
    )
    assert report.imported == 2
    assert [(e.line, e.message) for e in report.errors] == [
        (2, "not valid JSON (Expecting property name enclosed in double quotes)"),
        (3, "id is missing"),
        (5, "not a JSON object"),
        (6, "price '-1' is not a non-negative number"),
    ]
    assert await count(sessions, Product) == 2


async def test_products_are_embedded_in_batches_and_reimport_updates(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    rows = "".join(f"p{i},Product {i},,Things,{i},\n" for i in range(10))
    path = write(tmp_path, "many.csv", "id,title,description,category,price,url\n" + rows)
    embedder = FakeEmbedder()
    progress: list[int] = []
    report = await import_products(
        path, sessions=sessions, embedder=embedder, batch_size=4, progress=progress.append
    )
    assert report.imported == 10 and embedder.calls == [4, 4, 2]
    assert sum(progress) == 10  # data lines after the header
    write(tmp_path, "many.csv", "id,title\np3,Renamed product\n")
    await import_products(path, sessions=sessions, embedder=embedder)
    async with unit_of_work(sessions) as session:
        renamed = await session.scalar(select(Product).where(Product.external_id == "p3"))
    assert await count(sessions, Product) == 10
    assert renamed is not None and renamed.title == "Renamed product"


async def test_purchases_in_both_formats_with_bad_rows(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    await import_products(
        write(tmp_path, "catalog.csv", PRODUCTS_CSV), sessions=sessions, embedder=FakeEmbedder()
    )
    csv_file = write(
        tmp_path,
        "purchases.csv",
        "platform,user_id,product_id,time\n"
        "telegram,42,sku-1,2025-03-01T10:00:00Z\n"
        "telegram,42,sku-9,2025-03-02T10:00:00Z\n"
        "slack,U7,sku-5,1735689600\n"
        "slack,,sku-5,1735689600\n"
        "slack,U7,sku-1,yesterday\n",
    )
    report = await import_purchases(csv_file, sessions=sessions)
    assert report.imported == 2
    assert [str(e) for e in report.errors] == [
        "line 3: product 'sku-9' is not in the catalog",
        "line 5: user_id missing",
        "line 6: time 'yesterday' is neither ISO 8601 nor Unix seconds",
    ]
    lines = [
        {"platform": "telegram", "user_id": 42, "product_id": "sku-5", "time": "2025-03-03"},
        {"platform": "telegram", "user_id": "42", "product_id": "sku-1"},
    ]
    jsonl = write(tmp_path, "purchases.jsonl", "\n".join(json.dumps(x) for x in lines))
    report = await import_purchases(jsonl, sessions=sessions)
    assert report.imported == 1 and [str(e) for e in report.errors] == ["line 2: time missing"]
    # Importing the same file again adds nothing.
    await import_purchases(csv_file, sessions=sessions)
    assert await count(sessions, Purchase) == 3
    async with unit_of_work(sessions) as session:
        users = (await session.execute(select(User.platform, User.external_id))).all()
    assert sorted(users) == [("slack", "U7"), ("telegram", "42")]


async def test_a_file_without_the_needed_columns_is_refused(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    with pytest.raises(FileFormatError, match="the header lacks time"):
        await import_purchases(
            write(tmp_path, "p.csv", "platform,user_id,product_id\n"), sessions=sessions
        )
    with pytest.raises(FileFormatError, match=r"use \.csv"):
        await import_products(
            write(tmp_path, "p.xlsx", ""), sessions=sessions, embedder=FakeEmbedder()
        )
