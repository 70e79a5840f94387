"""Migration 0012 on SQLite and PostgreSQL: documents stored before it have no recorded model,
and going back keeps every document and chunk."""

from __future__ import annotations

from sqlalchemy import inspect, text

from bot.migrate import downgrade_async, upgrade_async
from services.kb.knowledge import KnowledgeBase
from storage.db import create_engine, session_factory, unit_of_work
from tests.fakes.kb_embedder import HashingEmbedder

DOCUMENT = text(
    "INSERT INTO documents (id, path, title, kind, content_hash, chunk_count, created_at, "
    "updated_at) VALUES (1, '/kb/a.md', 'A', 'md', 'x', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
)
CHUNK = text(
    "INSERT INTO chunks (document_id, position, kind, section, text, embedding) "
    "VALUES (1, 0, 'passage', '', 'Some text.', :embedding)"
)


async def test_0012_records_no_model_for_old_documents_and_goes_back(database_url: str) -> None:
    await upgrade_async(database_url, "0011")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(DOCUMENT)
            await connection.execute(CHUNK, {"embedding": b"\0" * 16})
        await upgrade_async(database_url)
        async with unit_of_work(session_factory(engine)) as session:
            (document,) = await KnowledgeBase(HashingEmbedder()).documents(session)
            assert document.embedding_model is None  # another model: `kb add` re-embeds it
        await engine.dispose()

        await downgrade_async(database_url, "0011")
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda c: {column["name"] for column in inspect(c).get_columns("documents")}
            )
            chunks = await connection.scalar(text("SELECT count(*) FROM chunks"))
        assert "embedding_model" not in columns
        assert chunks == 1  # SQLite's table copy would have cascaded to the chunks
        await engine.dispose()
        await upgrade_async(database_url)
    finally:
        await engine.dispose()
