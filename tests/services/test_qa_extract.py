"""The quoted answer of a small model: one source, numbered as the answer's only source."""

from __future__ import annotations

from services.kb.knowledge import Hit, KnowledgeBase, Source
from services.qa.answer import extract
from services.qa.standalone import Query
from tests.fakes.kb_embedder import HashingEmbedder


async def test_the_quoted_source_is_number_one_whatever_its_rank() -> None:
    kb = KnowledgeBase(HashingEmbedder())
    shipping = Source("Shipping", "Times", "Orders ship within two days.", "passage", "a.md")
    warranty = Source("Warranty", "Bulbs", "Bulbs are covered for one year.", "passage", "b.md")
    hits = [Hit(shipping, 0.5, 0.1, True), Hit(warranty, 0.5, 0.1, True)]
    answer = await extract(Query("how long are bulbs covered for"), hits, kb=kb)
    assert answer == (
        "From the knowledge base:\n> Bulbs are covered for one year. [1]\n\n"
        "Sources:\n[1] Warranty — Bulbs"
    )
