"""Reading catalog and purchase files: CSV with a header row, or JSON lines.

A bad row becomes a :class:`RowError` with its line number and the rest of the file still
reads; only an unreadable file (unknown format, missing columns) stops the import.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PRODUCT_COLUMNS = ("id", "title", "description", "category", "price", "url")
PURCHASE_COLUMNS = ("platform", "user_id", "product_id", "time")
JSON_SUFFIXES = {".jsonl", ".ndjson", ".json"}


class FileFormatError(ValueError):
    """The file as a whole cannot be read; the message says why."""


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class ProductRow:
    line: int
    external_id: str
    title: str
    description: str
    category: str
    price: float | None
    url: str | None

    @property
    def text(self) -> str:
        """What gets embedded: the title first, as it says most."""
        parts = [self.title, self.category, self.description[:1000]]
        return ". ".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class PurchaseRow:
    line: int
    platform: str
    user_id: str
    product_id: str
    purchased_at: datetime


def records(path: Path, *, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs; a JSON line that does not parse yields an empty record
    with the parse error under the key ``"\\0error"``."""
    try:
        if path.suffix.lower() in JSON_SUFFIXES:
            yield from _json_lines(path)
        else:
            yield from _csv_rows(path, required=required)
    except UnicodeDecodeError:
        # Found only when the reader gets there, so rows before it may be imported already.
        raise FileFormatError(f"{path.name}: not UTF-8 text; save it as UTF-8") from None


def _csv_rows(path: Path, *, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() not in {".csv", ".tsv", ".txt"}:
        raise FileFormatError(f"{path.name}: use .csv (with a header row) or .jsonl")
    with path.open(newline="", encoding="utf-8-sig") as file:
        dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
        reader = csv.DictReader(file, dialect=dialect)
        start = 1  # where the record being read begins: the header, then each row
        try:
            header = [name.strip().lower() for name in reader.fieldnames or []]
            missing = [c for c in required if c not in header]
            if missing:
                raise FileFormatError(f"{path.name}: the header lacks {', '.join(missing)}")
            reader.fieldnames = header
            start = reader.line_num + 1
            for record in reader:
                yield start, dict(record)
                start = reader.line_num + 1
        except csv.Error as exc:  # e.g. a field over the csv module's size limit
            raise FileFormatError(f"{path.name}: line {start}: {exc}") from None


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, {"\0error": f"not valid JSON ({exc.msg})"}
                continue
            if not isinstance(value, dict):
                yield number, {"\0error": "not a JSON object"}
                continue
            yield number, {str(k).lower(): v for k, v in value.items()}


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    return "" if value is None else str(value).strip()


def product_row(line: int, record: dict[str, Any]) -> ProductRow | RowError:
    if "\0error" in record:
        return RowError(line, record["\0error"])
    external_id, title = _text(record, "id"), _text(record, "title")
    if not external_id:
        return RowError(line, "id is missing")
    if len(external_id) > 128:
        return RowError(line, "id is longer than 128 characters")
    if not title:
        return RowError(line, "title is missing")
    price: float | None = None
    raw_price = _text(record, "price")
    if raw_price:
        try:
            price = float(raw_price.lstrip("$€£"))
        except ValueError:
            return RowError(line, f"price {raw_price!r} is not a number")
        if not math.isfinite(price) or price < 0:
            return RowError(line, f"price {raw_price!r} is not a non-negative number")
    url = _text(record, "url") or None
    if url is not None and not url.startswith(("http://", "https://")):
        return RowError(line, f"url {url[:60]!r} does not start with http:// or https://")
    return ProductRow(
        line,
        external_id,
        title[:512],
        _text(record, "description"),
        _text(record, "category")[:256],
        price,
        url[:1024] if url else None,
    )


def parse_time(raw: str) -> datetime:
    """ISO 8601 (a time without zone is UTC) or Unix seconds."""
    try:
        return datetime.fromtimestamp(float(raw), UTC)
    except ValueError:
        pass
    moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def purchase_row(line: int, record: dict[str, Any]) -> PurchaseRow | RowError:
    if "\0error" in record:
        return RowError(line, record["\0error"])
    values = {key: _text(record, key) for key in PURCHASE_COLUMNS}
    missing = [key for key, value in values.items() if not value]
    if missing:
        return RowError(line, f"{', '.join(missing)} missing")
    try:
        moment = parse_time(values["time"])
    except (ValueError, OverflowError, OSError):
        return RowError(line, f"time {values['time']!r} is neither ISO 8601 nor Unix seconds")
    return PurchaseRow(line, values["platform"], values["user_id"], values["product_id"], moment)
