"""Knowledge-base repositories: keyword-only functions over an `AsyncSession`. They never commit.

Every change bumps the single `kb_state` row, so a process holding an in-memory index can tell
with one primary-key read that it is stale (another process may have run `kb add`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Chunk, Document, KnowledgeBaseState, utcnow


@dataclass(frozen=True, slots=True)
class NewChunk:
    """A chunk to store, its embedding as float32 bytes."""

    kind: str
    section: str
    text: str
    embedding: bytes


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk with its document's title and embedding model, as the index needs it."""

    id: int
    kind: str
    section: str
    text: str
    embedding: bytes
    title: str
    path: str
    embedding_model: str | None


async def kb_version(session: AsyncSession) -> int:
    version = await session.scalar(
        select(KnowledgeBaseState.version).where(KnowledgeBaseState.id == 1)
    )
    return int(version or 0)


async def _bump_version(session: AsyncSession) -> None:
    result = await session.execute(
        update(KnowledgeBaseState)
        .where(KnowledgeBaseState.id == 1)
        .values(version=KnowledgeBaseState.version + 1)
    )
    if not getattr(result, "rowcount", 0):  # a database created without the migration's row
        session.add(KnowledgeBaseState(id=1, version=1))
        await session.flush()


async def get_document(session: AsyncSession, *, path: str) -> Document | None:
    return await session.scalar(select(Document).where(Document.path == path))


async def list_documents(session: AsyncSession) -> Sequence[Document]:
    return (await session.scalars(select(Document).order_by(Document.path))).all()


async def replace_document(
    session: AsyncSession,
    *,
    path: str,
    title: str,
    kind: str,
    content_hash: str,
    embedding_model: str,
    chunks: Sequence[NewChunk],
) -> Document:
    """Create the document at ``path``, or replace its metadata and all of its chunks (embedded
    by ``embedding_model``)."""
    now = utcnow()
    document = await get_document(session, path=path)
    if document is None:
        document = Document(path=path, created_at=now)
        session.add(document)
    else:
        await session.execute(delete(Chunk).where(Chunk.document_id == document.id))
    document.title, document.kind, document.content_hash = title, kind, content_hash
    document.embedding_model = embedding_model
    document.chunk_count, document.updated_at = len(chunks), now
    await session.flush()
    session.add_all(
        Chunk(
            document_id=document.id,
            position=position,
            kind=chunk.kind,
            section=chunk.section,
            text=chunk.text,
            embedding=chunk.embedding,
        )
        for position, chunk in enumerate(chunks)
    )
    await _bump_version(session)
    await session.flush()
    return document


async def remove_documents(session: AsyncSession, *, paths: Sequence[str]) -> list[str]:
    """Remove the documents at ``paths`` or under them (a folder); the removed paths."""
    removed: list[str] = []
    for document in await list_documents(session):
        if any(document.path == p or document.path.startswith(p.rstrip("/") + "/") for p in paths):
            removed.append(document.path)
            # Chunks go too: ON DELETE CASCADE, and an explicit delete for SQLite databases
            # opened without foreign keys.
            await session.execute(delete(Chunk).where(Chunk.document_id == document.id))
            await session.delete(document)
    if removed:
        await _bump_version(session)
        await session.flush()
    return removed


async def all_chunks(session: AsyncSession) -> list[StoredChunk]:
    """Every chunk in a stable order (document path, then position), for building the index."""
    result = await session.execute(
        select(
            Chunk.id,
            Chunk.kind,
            Chunk.section,
            Chunk.text,
            Chunk.embedding,
            Document.title,
            Document.path,
            Document.embedding_model,
        )
        .join(Document, Chunk.document_id == Document.id)
        .order_by(Document.path, Chunk.position)
    )
    return [StoredChunk(*row) for row in result.all()]
