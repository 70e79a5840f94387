"""`switchboard catalog import` and `switchboard purchases import`, batch by batch.

Each batch is embedded in one call (the embedder batches on the model host) and written in one
statement and one transaction, so an interrupted import keeps what it finished and a re-run
picks up the rest (products are upserted, repeated purchases skipped). While one batch is
written, the next is already being embedded.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from services.recommend.parsing import (
    PRODUCT_COLUMNS,
    PURCHASE_COLUMNS,
    ProductRow,
    PurchaseRow,
    RowError,
    product_row,
    purchase_row,
    records,
)
from services.types import Embedder, unreadable
from storage import catalog as repo
from storage.db import SessionFactory, unit_of_work

T = TypeVar("T")
R = TypeVar("R", ProductRow, PurchaseRow)
Progress = Callable[[int], object]  # called with the number of lines just processed


@dataclass(slots=True)
class ImportReport:
    imported: int = 0
    already_stored: int = 0  # purchases: rows stored by an earlier import, skipped
    errors: list[RowError] = field(default_factory=list)
    embed_seconds: float = 0.0
    unreadable: int = 0  # products whose text the embedding model cannot read


def count_lines(path: Path) -> int:
    """For the progress bar's total: lines, including a header (cheap next to embedding)."""
    with path.open("rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


def _batches(rows: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _split(parsed: Iterable[R | RowError], report: ImportReport) -> Iterator[R]:
    for row in parsed:
        if isinstance(row, RowError):
            report.errors.append(row)
        else:
            yield row


async def import_products(
    path: Path,
    *,
    sessions: SessionFactory,
    embedder: Embedder,
    batch_size: int = 256,
    progress: Progress | None = None,
) -> ImportReport:
    """Read, embed and upsert every good row of a catalog file."""
    report = ImportReport()
    parsed = (product_row(line, r) for line, r in records(path, required=PRODUCT_COLUMNS[:2]))
    batches = _batches(_split(parsed, report), batch_size)
    loop = asyncio.get_running_loop()

    async def embed(batch: list[ProductRow]) -> tuple[list[ProductRow], list[bytes]]:
        started = loop.time()
        vectors = await embedder.embed([row.text for row in batch])
        report.embed_seconds += loop.time() - started
        # A text the model cannot read ("落地灯" to MiniLM) embeds as noise close to every other
        # such text: a zero vector instead, so no "similar to" reason or /buy match rests on it.
        unread = await asyncio.to_thread(lambda: [unreadable(embedder, r.text) for r in batch])
        report.unreadable += sum(unread)
        return batch, [
            (np.zeros_like(v) if blank else v).astype("<f4").tobytes()
            for v, blank in zip(vectors, unread, strict=True)
        ]

    first = next(batches, None)
    pending = asyncio.ensure_future(embed(first)) if first else None
    last_line = 1
    while pending is not None:
        batch, vectors = await pending
        upcoming = next(batches, None)
        pending = asyncio.ensure_future(embed(upcoming)) if upcoming else None
        products = [
            repo.NewProduct(
                r.external_id, r.title, r.description, r.category, r.price, r.url, vector
            )
            for r, vector in zip(batch, vectors, strict=True)
        ]
        async with unit_of_work(sessions) as session:
            await repo.upsert_products(session, products=products)
        report.imported += len(batch)
        if progress is not None:
            progress(batch[-1].line - last_line)
            last_line = batch[-1].line
    return report


async def import_purchases(
    path: Path,
    *,
    sessions: SessionFactory,
    batch_size: int = 5000,
    progress: Progress | None = None,
) -> ImportReport:
    """Store every good row of a purchase file whose product is in the catalog."""
    report = ImportReport()
    parsed = (purchase_row(line, r) for line, r in records(path, required=PURCHASE_COLUMNS))
    last_line = 1
    for batch in _batches(_split(parsed, report), batch_size):
        rows = [r for r in batch if isinstance(r, PurchaseRow)]
        async with unit_of_work(sessions) as session:
            products = await repo.product_ids(session, external_ids=[r.product_id for r in rows])
            known = [r for r in rows if r.product_id in products]
            report.errors += [
                RowError(r.line, f"product {r.product_id!r} is not in the catalog")
                for r in rows
                if r.product_id not in products
            ]
            users = await repo.user_ids(session, users=[(r.platform, r.user_id) for r in known])
            added = await repo.add_purchases(
                session,
                purchases=[
                    repo.NewPurchase(
                        users[(r.platform, r.user_id)], products[r.product_id], r.purchased_at
                    )
                    for r in known
                ],
            )
        report.imported += added
        report.already_stored += len(known) - added
        if progress is not None:
            progress(batch[-1].line - last_line)
            last_line = batch[-1].line
    report.errors.sort(key=lambda e: e.line)
    return report
