"""The knowledge base: documents in SQL, chunk vectors in an in-memory index.

SQL is the truth (documents, chunks and their embeddings); each process keeps a
:class:`Retriever` built from it and rebuilds it when the `kb_state` version it read last
changes, which costs one primary-key read per question. So `switchboard kb add` in one process
is seen by the bots running in others at their next question.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.ext.asyncio import AsyncSession

from services.kb.chunking import ChunkDraft, chunk_document, split_sentences
from services.kb.loaders import UnsupportedDocument, load
from services.kb.retrieval import (
    FAQ_THRESHOLD,
    PASSAGE_THRESHOLD,
    SENTENCE_WEIGHT,
    RetrievalConfig,
    Retriever,
)
from services.types import Embedder, unreadable
from storage import knowledge as repo
from storage.models import Document

log = logging.getLogger(__name__)

# Part of every content hash: a new chunker re-chunks files that did not change.
CHUNKER_VERSION = b"chunker-3\n"  # 3: Chinese and Japanese sized by character, split at 。！？
EMBED_BATCH = 256
# Sentence vectors of recently retrieved sources: a few MB at MiniLM's size.
SENTENCE_CACHE = 2048
QUESTION_CACHE = 256


@dataclass(frozen=True, slots=True)
class Source:
    """A retrieved chunk, as an answer cites it."""

    title: str
    section: str  # heading path of a passage; the question of an FAQ row
    text: str  # the passage; the answer of an FAQ row
    kind: str  # "passage" or "faq"
    path: str

    @property
    def citation(self) -> str:
        section = self.section if self.kind == "passage" else f"Q: {self.section}"
        return f"{self.title} — {section}" if section else self.title


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: a source, how close it is, and whether that is close enough.

    ``confidence`` is what the calibrated threshold of its kind judges: an FAQ row's match
    confidence, or a passage's plus how well its best sentence matches. ``score`` orders the
    hits: the confidence, plus the best sentence for an FAQ row too (its answer's sentences),
    so a passage that holds the answer outranks an FAQ question that only sounds alike."""

    source: Source
    similarity: float
    confidence: float
    confident: bool  # above the calibrated threshold for its kind of chunk
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What `kb add` did with one file."""

    path: str
    # "re-embedded": the file is unchanged but was embedded by another model.
    status: Literal["added", "updated", "re-embedded", "unchanged", "failed"]
    chunks: int = 0
    title: str = ""
    error: str = ""
    unreadable: int = 0  # chunks in a script the embedding model cannot read


@dataclass(frozen=True, slots=True)
class _Index:
    version: int
    retriever: Retriever
    sources: list[Source]
    dim: int


def calibrated_threshold(embedder: Embedder, kind: str) -> float:
    """The answer threshold for ``kind`` ("faq" or "passage") calibrated for this embedder
    (``minilm-intents`` has its own), or the one calibrated for the plain MiniLM."""
    own = getattr(embedder, f"{kind}_threshold", None)
    return float(own) if isinstance(own, float) else _PLAIN_THRESHOLDS[kind]


_PLAIN_THRESHOLDS = {"faq": FAQ_THRESHOLD, "passage": PASSAGE_THRESHOLD}


def embedding_model(embedder: Embedder) -> str:
    """The model ``embedder`` runs, as documents record it. Where it runs ("local:" or, on the
    model server, "openai:") is left out: the same model gives the same vectors either way, so
    `kb add` on the model server's machine serves bots that use MODEL_HOST_URL."""
    where, _, model = embedder.name.partition(":")
    return model if where in ("local", "openai") and model else embedder.name


def sentences_of(source: Source) -> list[str]:
    """A source's text (a passage, or an FAQ row's answer) as sentences, as they are judged and
    quoted."""
    return split_sentences(source.text) or [source.text]


def _merged(hits: Sequence[Hit]) -> list[Hit]:
    """Passages by score, merged with FAQ rows in the retriever's order (the vote that the
    banking77 and HINT3 figures measure): an FAQ row goes before the passages that score lower."""
    faqs = [hit for hit in hits if hit.source.kind == "faq"]
    passages = sorted((hit for hit in hits if hit.source.kind != "faq"), key=lambda h: -h.score)
    merged: list[Hit] = []
    while faqs and passages:
        merged.append(faqs.pop(0) if faqs[0].score >= passages[0].score else passages.pop(0))
    return merged + faqs + passages


def _unit(vector: NDArray[np.float32]) -> NDArray[np.float32]:
    normalised: NDArray[np.float32] = (vector / (np.linalg.norm(vector) or 1.0)).astype(np.float32)
    return normalised


def content_hash(data: bytes) -> str:
    return hashlib.sha256(CHUNKER_VERSION + data).hexdigest()


def _groups(chunks: Sequence[repo.StoredChunk]) -> list[int]:
    """FAQ rows with the same answer form one group; every passage is a group of its own."""
    answers: dict[str, int] = {}
    groups = []
    for row, chunk in enumerate(chunks):
        if chunk.kind == "faq":
            key = " ".join(chunk.text.lower().split())
            groups.append(answers.setdefault(key, -1 - len(answers)))
        else:
            groups.append(row)
    return groups


class KnowledgeBase:
    """Ingests documents and answers searches; one instance per process, shared by handlers."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        config: RetrievalConfig | None = None,
        faq_threshold: float | None = None,
        passage_threshold: float | None = None,
    ) -> None:
        self.embedder = embedder
        self.model = embedding_model(embedder)
        self.config = config or RetrievalConfig()
        given = {"faq": faq_threshold, "passage": passage_threshold}
        self.thresholds = {
            kind: calibrated_threshold(embedder, kind) if value is None else value
            for kind, value in given.items()
        }
        self._index: _Index | None = None
        self._lock = asyncio.Lock()
        # A source's sentence vectors, least recently used first.
        self._sentences: OrderedDict[Source, NDArray[np.float32]] = OrderedDict()
        # The latest questions' own unit vectors: quoting an answer needs the one its search
        # has just embedded.
        self._questions: OrderedDict[str, NDArray[np.float32]] = OrderedDict()

    # --- ingestion -----------------------------------------------------------------------

    async def add(self, session: AsyncSession, path: Path) -> IngestResult:
        """Ingest one file: nothing happens when it is unchanged and was embedded by this model;
        otherwise its chunks are replaced."""
        key = str(await asyncio.to_thread(path.resolve))
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            return IngestResult(key, "failed", error=exc.strerror or str(exc))
        digest = content_hash(data)
        existing = await repo.get_document(session, path=key)
        same_text = existing is not None and existing.content_hash == digest
        if existing is not None and same_text and existing.embedding_model == self.model:
            return IngestResult(key, "unchanged", existing.chunk_count, existing.title)
        try:
            # Parsing a large PDF is CPU work; keep the event loop free.
            document = await asyncio.to_thread(load, path, data)
        except UnsupportedDocument as exc:
            return IngestResult(key, "failed", error=str(exc))
        drafts = chunk_document(document)
        if not drafts:
            return IngestResult(key, "failed", error="no text found")
        chunks = await self._embed(drafts)
        await repo.replace_document(
            session,
            path=key,
            title=document.title,
            kind=document.kind,
            content_hash=digest,
            embedding_model=self.model,
            chunks=chunks,
        )
        status: Literal["added", "updated", "re-embedded"] = (
            "added" if existing is None else "re-embedded" if same_text else "updated"
        )
        unread = await asyncio.to_thread(
            lambda: sum(unreadable(self.embedder, d.embed_text) for d in drafts)
        )
        return IngestResult(key, status, len(chunks), document.title, unreadable=unread)

    async def _embed(self, drafts: Sequence[ChunkDraft]) -> list[repo.NewChunk]:
        vectors = [
            await self.embedder.embed([d.embed_text for d in drafts[start : start + EMBED_BATCH]])
            for start in range(0, len(drafts), EMBED_BATCH)
        ]
        matrix = np.concatenate(vectors).astype(np.float32, copy=False)
        return [
            repo.NewChunk(d.kind, d.section, d.text, matrix[i].tobytes())
            for i, d in enumerate(drafts)
        ]

    async def remove(self, session: AsyncSession, paths: Sequence[Path]) -> list[str]:
        return await repo.remove_documents(session, paths=[str(p.resolve()) for p in paths])

    async def documents(self, session: AsyncSession) -> Sequence[Document]:
        return await repo.list_documents(session)

    # --- search --------------------------------------------------------------------------

    async def size(self, session: AsyncSession) -> int:
        """How many chunks are searchable (after bringing the index up to date)."""
        index = await self._current(session)
        return len(index.sources)

    async def search(
        self,
        session: AsyncSession,
        query: str,
        *,
        context: str = "",
        context_weight: float = 1.0,
        k: int = 4,
    ) -> list[Hit]:
        """The best ``k`` matches for ``query``, best first; an empty KB gives [].
        ``context`` (the exchange a follow-up leans on) joins the query, scaled by
        ``context_weight``."""
        index = await self._current(session)
        if not index.sources or not query.strip():
            return []
        plain, vector = await self._query_vectors(query, context, context_weight)
        if unreadable(self.embedder, query):
            log.info("the embedding model cannot read the question; nothing matches it")
            return []
        if vector.shape[0] != index.dim:
            log.error(
                "the KB was embedded with %d dimensions, the embedder gives %d: re-add it",
                index.dim,
                vector.shape[0],
            )
            return []
        text = f"{context} {query}" if context else query
        groups = index.retriever.search(vector, [text], k=k)[0]
        # Which sentence answers is judged against the message alone and against it with its
        # context, the better of the two: "is that covered?" is answered by a sentence about
        # cover, whatever the last turn was; "and for Spain?" needs the last turn's topic.
        sources = [index.sources[group.row] for group in groups]
        best_sentences = [
            float(np.maximum(matrix @ plain, matrix @ vector).max())
            for matrix in await self.sentence_vectors(sources)
        ]
        hits = []
        for group, source, sentence in zip(groups, sources, best_sentences, strict=True):
            threshold = self.thresholds.get(source.kind, self.thresholds["passage"])
            supported = group.confidence + SENTENCE_WEIGHT * sentence
            confidence = group.faq_confidence if source.kind == "faq" else supported
            hits.append(
                Hit(source, group.similarity, confidence, confidence >= threshold, supported)
            )
        return _merged(hits)

    async def sentence_vectors(self, sources: Sequence[Source]) -> list[NDArray[np.float32]]:
        """The vectors of each source's `sentences_of`, one row per sentence. They are embedded
        when first asked for and kept for the SENTENCE_CACHE sources used last: judging hits
        needs them, and quoting the best sentence needs them again."""
        cache = self._sentences
        # Copied out before the await: another search may evict entries meanwhile.
        found = {source: cache[source] for source in sources if source in cache}
        missing = list(dict.fromkeys(source for source in sources if source not in found))
        if missing:
            pieces = [sentences_of(source) for source in missing]
            vectors = await self.embedder.embed(
                [sentence for piece in pieces for sentence in piece]
            )
            start = 0
            for source, piece in zip(missing, pieces, strict=True):
                found[source] = vectors[start : start + len(piece)]
                start += len(piece)
        for source, matrix in found.items():
            cache[source] = matrix
            cache.move_to_end(source)
        while len(cache) > SENTENCE_CACHE:
            cache.popitem(last=False)
        return [found[source] for source in sources]

    async def query_vector(
        self, query: str, *, context: str = "", weight: float = 1.0
    ) -> NDArray[np.float32]:
        """The query's unit vector; a context's embedding is added, scaled by ``weight``."""
        if not context and query in self._questions:
            return self._questions[query]
        return (await self._query_vectors(query, context, weight))[1]

    async def _query_vectors(
        self, query: str, context: str, weight: float
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """The query's unit vector alone, and with the context's added (scaled by ``weight``),
        from one embedding call."""
        vectors = await self.embedder.embed([query, context] if context else [query])
        plain = _unit(vectors[0])
        self._questions[query] = plain
        self._questions.move_to_end(query)
        while len(self._questions) > QUESTION_CACHE:
            self._questions.popitem(last=False)
        return plain, _unit(vectors[0] + weight * vectors[1:].sum(axis=0))

    async def _current(self, session: AsyncSession) -> _Index:
        version = await repo.kb_version(session)
        index = self._index
        if index is not None and index.version == version:
            return index
        async with self._lock:
            if self._index is None or self._index.version != version:
                chunks = await repo.all_chunks(session)
                self._index = await asyncio.to_thread(self._build, version, chunks)
                log.info(
                    "knowledge-base index rebuilt: %d chunks (version %d)",
                    len(self._index.sources),
                    version,
                )
            return self._index

    def _build(self, version: int, chunks: list[repo.StoredChunk]) -> _Index:
        # Vectors of two models are not comparable, even when their sizes agree. Documents
        # added before the model was recorded (migration 0012) are used as before when their
        # size fits, so that an upgrade does not empty the knowledge base.
        ours = [c for c in chunks if c.embedding_model == self.model]
        legacy = [c for c in chunks if c.embedding_model is None]
        sizes = Counter(len(c.embedding) for c in ours or legacy)
        width = sizes.most_common(1)[0][0] if sizes else 0
        if len(sizes) > 1:  # one name, two sizes: the model folder was replaced in place
            log.warning(
                "%d chunks differ in size from the rest and are skipped: `switchboard kb remove` "
                "and `kb add` their documents",
                sum(sizes.values()) - sizes[width],
            )
        usable = {self.model, None}
        kept = [c for c in chunks if c.embedding_model in usable and len(c.embedding) == width]
        skipped = {c.path for c in chunks} - {c.path for c in kept}
        if skipped:
            log.warning(
                "%d knowledge-base documents were not embedded by %s (EMBEDDING_MODEL) and are "
                "left out of answers: run `switchboard kb add PATH` again to re-embed them",
                len(skipped),
                self.model,
            )
        if legacy:
            log.info(
                "%d knowledge-base chunks were added before their model was recorded; "
                "`switchboard kb add PATH` again records it",
                len(legacy),
            )
        chunks = kept
        dim = width // 4
        vectors = (
            np.frombuffer(b"".join(c.embedding for c in chunks), dtype=np.float32).reshape(-1, dim)
            if chunks
            else np.zeros((0, 0), dtype=np.float32)
        )
        sources = [Source(c.title, c.section, c.text, c.kind, c.path) for c in chunks]
        # BM25 sees the question and answer of an FAQ row, and a passage with its headings.
        texts = [f"{c.section}\n{c.text}" for c in chunks]
        retriever = Retriever(vectors, texts, _groups(chunks), config=self.config)
        return _Index(version, retriever, sources, dim)
