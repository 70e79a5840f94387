"""Knowledge base: every file type in, re-adding, removing, chunking and the in-memory index."""

from __future__ import annotations

import asyncio
import codecs
import itertools
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from bot.settings import Settings
from services.kb import knowledge
from services.kb.chunking import chunk_section
from services.kb.index import LexicalIndex
from services.kb.ingest import NO_FILES, ingest_paths
from services.kb.knowledge import Hit, KnowledgeBase, Source, _merged, embedding_model
from services.kb.retrieval import Retriever
from services.qa.answer import extract
from services.qa.standalone import Query
from storage import knowledge as repo
from storage.db import SessionFactory, create_engine, session_factory, unit_of_work
from storage.models import Chunk, Document
from tests.fakes.kb_embedder import HashingEmbedder, tiny_pdf

MARKDOWN = """# Returns guide

Intro paragraph about returns.

## Sending an item back

Print the label and drop the parcel at any post office.

## Refund timing

Refunds arrive within five business days.
"""
HTML = """<html><head><title>Delivery</title><script>var hidden = "script text";</script></head>
<body><h1>Delivery</h1><h2>Express</h2><p>Express delivery takes one day.</p>
<h2>Standard</h2><p>Standard delivery takes <b>three</b> days.</p></body></html>"""
FAQ = (
    "question,answer\n"
    'How do I reset my password?,"Open Settings, then Security."\n'
    "Do you ship abroad?,Yes.\n"
)


@pytest.fixture
async def sessions(migrated: Settings) -> AsyncIterator[SessionFactory]:
    engine = create_engine(migrated.db_url)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "nested").mkdir(parents=True)
    (folder / "returns.md").write_text(MARKDOWN)
    (folder / "delivery.html").write_text(HTML)
    (folder / "nested" / "opening.txt").write_text("We are open from 9 to 5 on weekdays.\n")
    (folder / "faq.csv").write_text(FAQ)
    lines = ["Every device has a two year warranty.", "Batteries are covered for one year."]
    (folder / "warranty.pdf").write_bytes(tiny_pdf(lines, title="Warranty guide"))
    (folder / ".hidden.md").write_text("# secret\n\nnot for the KB")
    (folder / "image.png").write_bytes(b"\x89PNG")
    return folder


async def chunks_of(sessions: SessionFactory) -> list[repo.StoredChunk]:
    async with unit_of_work(sessions) as session:
        return await repo.all_chunks(session)


async def test_a_folder_of_every_format_is_ingested(sessions: SessionFactory, docs: Path) -> None:
    kb = KnowledgeBase(HashingEmbedder())
    results = await ingest_paths(kb, sessions, [docs])
    assert sorted((Path(r.path).name, r.status) for r in results) == [
        ("delivery.html", "added"),
        ("faq.csv", "added"),
        ("opening.txt", "added"),
        ("returns.md", "added"),
        ("warranty.pdf", "added"),
    ]
    by_title = {}
    for chunk in await chunks_of(sessions):
        by_title.setdefault(chunk.title, []).append(chunk)
    assert [(c.section, c.text) for c in by_title["Returns guide"]] == [
        ("", "Intro paragraph about returns."),
        ("Sending an item back", "Print the label and drop the parcel at any post office."),
        ("Refund timing", "Refunds arrive within five business days."),
    ]
    html = by_title["Delivery"]
    assert [c.section for c in html] == ["Delivery › Express", "Delivery › Standard"]
    assert html[1].text == "Standard delivery takes three days."
    assert all("script text" not in c.text for c in html)
    assert [(c.kind, c.section, c.text) for c in by_title["faq"]] == [
        ("faq", "How do I reset my password?", "Open Settings, then Security."),
        ("faq", "Do you ship abroad?", "Yes."),
    ]
    pdf = by_title["Warranty guide"]
    assert pdf[0].section == "page 1" and "two year warranty" in pdf[0].text
    assert "open from 9 to 5" in by_title["opening"][0].text
    assert all(len(c.embedding) == 256 * 4 for chunks in by_title.values() for c in chunks)


async def test_readding_unchanged_does_nothing_and_a_change_replaces_chunks(
    sessions: SessionFactory, docs: Path
) -> None:
    embedder = HashingEmbedder()
    kb = KnowledgeBase(embedder)
    path = docs / "returns.md"
    async with unit_of_work(sessions) as session:
        assert (await kb.add(session, path)).status == "added"
        version = await repo.kb_version(session)
    calls = len(embedder.calls)

    async with unit_of_work(sessions) as session:
        result = await kb.add(session, path)
        assert (result.status, result.chunks) == ("unchanged", 3)
        assert await repo.kb_version(session) == version
    assert len(embedder.calls) == calls  # nothing was embedded again

    path.write_text(MARKDOWN.replace("five business days", "ten business days"))
    async with unit_of_work(sessions) as session:
        assert (await kb.add(session, path)).status == "updated"
        assert await repo.kb_version(session) == version + 1
    texts = [c.text for c in await chunks_of(sessions)]
    assert "Refunds arrive within ten business days." in texts
    assert not any("five business days" in t for t in texts)
    async with unit_of_work(sessions) as session:
        count = len((await session.scalars(select(Chunk))).all())
    assert count == 3  # the old chunks are gone, not duplicated


async def test_remove_a_file_or_a_folder(sessions: SessionFactory, docs: Path) -> None:
    kb = KnowledgeBase(HashingEmbedder())
    await ingest_paths(kb, sessions, [docs])
    async with unit_of_work(sessions) as session:
        removed = await kb.remove(session, [docs / "nested"])
        assert [Path(p).name for p in removed] == ["opening.txt"]
        assert await kb.remove(session, [docs / "nowhere.md"]) == []
    async with unit_of_work(sessions) as session:
        assert {Path(d.path).name for d in await kb.documents(session)} == {
            "delivery.html",
            "faq.csv",
            "returns.md",
            "warranty.pdf",
        }
    assert not any(c.title == "opening" for c in await chunks_of(sessions))


async def test_bad_files_fail_alone(sessions: SessionFactory, tmp_path: Path) -> None:
    (tmp_path / "no_columns.csv").write_text("a,b\n1,2\n")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 nonsense")
    (tmp_path / "good.txt").write_text("Good text.")
    paths = [tmp_path / "no_columns.csv", tmp_path / "broken.pdf", tmp_path / "good.txt"]
    results = await ingest_paths(KnowledgeBase(HashingEmbedder()), sessions, paths)
    assert [r.status for r in results] == ["failed", "failed", "added"]
    assert "question" in results[0].error


async def test_another_process_sees_changes_at_its_next_search(
    sessions: SessionFactory, docs: Path
) -> None:
    writer, reader = KnowledgeBase(HashingEmbedder()), KnowledgeBase(HashingEmbedder())
    async with unit_of_work(sessions) as session:
        assert await reader.search(session, "warranty") == []
        await writer.add(session, docs / "warranty.pdf")
    async with unit_of_work(sessions) as session:
        hits = await reader.search(session, "how long is the device warranty")
        assert hits[0].source.title == "Warranty guide"


def test_long_sections_are_chunked_with_overlap() -> None:
    sentences = [f"Sentence number {i} says something about topic {i}." for i in range(60)]
    chunks = chunk_section(" ".join(sentences), max_words=50, overlap_words=12)
    assert len(chunks) > 5
    assert all(len(c.split()) <= 50 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        assert before.split(". ")[-1].rstrip(".") in after  # the last sentence is carried over


def test_faq_rows_with_one_answer_vote_together() -> None:
    # Two phrasings of "refund" share an answer; one "cancel" row is a hair closer to the query.
    vectors = np.array([[1, 0.15, 0], [1, 0.1, -0.1], [1, 0, 0.1]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = np.array([1, 0.05, 0.05], dtype=np.float32) / np.linalg.norm([1, 0.05, 0.05])
    plain = Retriever(vectors, ["a", "b", "c"]).search(query, ["q"], k=1)[0][0]
    voted = Retriever(vectors, ["a", "b", "c"], [7, 7, 8]).search(query, ["q"], k=2)[0]
    assert plain.group == 2
    assert [h.group for h in voted] == [7, 8]


def test_bm25_prefers_rare_words() -> None:
    index = LexicalIndex(["reset the router", "reset the password", "the the the"])
    scores = index.scores("password reset")
    assert int(np.argmax(scores)) == 1 and scores[2] == 0


async def test_the_store_round_trip_on_each_backend(database_url: str, docs: Path) -> None:
    from bot.migrate import upgrade

    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    kb = KnowledgeBase(HashingEmbedder())
    try:
        first = await ingest_paths(kb, sessions, [docs])
        again = await ingest_paths(kb, sessions, [docs])
        assert {r.status for r in first} == {"added"}
        assert {r.status for r in again} == {"unchanged"}
        async with unit_of_work(sessions) as session:
            hits = await kb.search(session, "how long is the device warranty")
            assert hits[0].source.title == "Warranty guide"
            assert len(await kb.remove(session, [docs])) == 5
        async with unit_of_work(sessions) as session:
            assert await kb.size(session) == 0
            assert await repo.kb_version(session) == 6  # five adds, then one removal
    finally:
        await engine.dispose()


async def test_another_embedding_model_re_embeds_unchanged_files(
    sessions: SessionFactory, docs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plain = KnowledgeBase(HashingEmbedder(384, name="local:all-minilm-l6-v2"))
    intents = KnowledgeBase(HashingEmbedder(768, name="local:minilm-intents"))
    assert {r.status for r in await ingest_paths(plain, sessions, [docs])} == {"added"}
    async with unit_of_work(sessions) as session:
        version = await repo.kb_version(session)

    switched = await ingest_paths(intents, sessions, [docs])
    assert {r.status for r in switched} == {"re-embedded"}
    assert all(len(c.embedding) == 768 * 4 for c in await chunks_of(sessions))
    async with unit_of_work(sessions) as session:
        assert await repo.kb_version(session) == version + 5  # other replicas rebuild
        assert {d.embedding_model for d in await intents.documents(session)} == {"minilm-intents"}
        hits = await intents.search(session, "how long is the device warranty")
        assert hits[0].source.title == "Warranty guide"
    assert {r.status for r in await ingest_paths(intents, sessions, [docs])} == {"unchanged"}

    # A bot still on the old model leaves the new vectors out, and says how to fix it.
    async with unit_of_work(sessions) as session:
        assert await plain.search(session, "how long is the device warranty") == []
    assert "5 knowledge-base documents were not embedded by all-minilm-l6-v2" in caplog.text
    assert "switchboard kb add PATH" in caplog.text


async def test_models_of_one_size_never_mix_and_unrecorded_ones_are_recorded_on_readding(
    sessions: SessionFactory, docs: Path
) -> None:
    first = KnowledgeBase(HashingEmbedder(name="local:first"))
    second = KnowledgeBase(HashingEmbedder(name="local:second"))
    async with unit_of_work(sessions) as session:
        await first.add(session, docs / "warranty.pdf")
        await second.add(session, docs / "returns.md")
    async with unit_of_work(sessions) as session:
        assert await second.size(session) == 3  # the returns guide's chunks only
        hits = await second.search(session, "how long is the device warranty")
        assert all(h.source.title == "Returns guide" for h in hits)
        # Documents stored before models were recorded (before migration 0012) still answer,
        # so an upgrade does not empty the knowledge base; re-adding records their model.
        await session.execute(update(Document).values(embedding_model=None))
    upgraded = KnowledgeBase(HashingEmbedder(name="local:second"))  # a bot started anew
    async with unit_of_work(sessions) as session:
        assert await upgraded.size(session) == 4
        assert (await second.add(session, docs / "returns.md")).status == "re-embedded"
        assert (await second.add(session, docs / "warranty.pdf")).status == "re-embedded"
        assert await second.size(session) == 4


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("local:minilm-intents", "minilm-intents"),
        ("openai:minilm-intents", "minilm-intents"),  # the same model on the model server
        ("fake:hashed-words", "fake:hashed-words"),
    ],
)
def test_documents_record_the_model_not_where_it_runs(name: str, model: str) -> None:
    assert embedding_model(HashingEmbedder(name=name)) == model


def test_passages_are_ranked_by_score_and_faq_rows_keep_the_vote_order() -> None:
    def hit(kind: str, name: str, score: float) -> Hit:
        return Hit(Source("doc", name, "text", kind, "/doc"), 0.5, score, True, score)

    # The retriever's order: FAQ rows by vote (b outvoted a despite its lower score).
    hits = [
        hit("faq", "b", 0.6),
        hit("passage", "p1", 0.5),
        hit("faq", "a", 0.9),
        hit("passage", "p2", 0.7),
    ]
    assert [h.source.section for h in _merged(hits)] == ["p2", "b", "a", "p1"]


async def test_sentence_vectors_are_cached_within_a_bound_and_searches_overlap_safely(
    sessions: SessionFactory, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kb = KnowledgeBase(HashingEmbedder())
    await ingest_paths(kb, sessions, [docs])
    questions = ["refund timing", "express delivery", "opening hours", "warranty", "password"]
    async with unit_of_work(sessions) as session:
        expected = [[h.score for h in await kb.search(session, q)] for q in questions]
    monkeypatch.setattr(knowledge, "SENTENCE_CACHE", 2)

    class Slow(HashingEmbedder):
        async def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
            await asyncio.sleep(0.001)  # other searches run meanwhile, as with a real model
            return await super().embed(texts)

    kb = KnowledgeBase(Slow())
    async with unit_of_work(sessions) as session:
        await kb.size(session)  # the index, built once before the searches race

        async def scores(question: str) -> list[float]:
            return [h.score for h in await kb.search(session, question)]

        got = await asyncio.gather(*(scores(q) for q in questions * 3))
    assert got == expected * 3
    assert len(kb._sentences) == 2


async def test_text_files_must_be_utf8_and_binary_ones_fail_alone(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    files = {
        "binary.md": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "binary.csv": b"question,answer\n\x00\x01\x02\r\x03,\x04\n",
        "random.txt": bytes(range(128, 256)),
        "latin1.md": "# Café\n\nCrème brûlée is served daily.\n".encode("latin-1"),
        "utf16.txt": "Open from 9 to 5.".encode("utf-16"),
        "bom_latin1.txt": codecs.BOM_UTF8 + "Opening hours\n\nCafé open.".encode("latin-1"),
        "bom.md": "# Café\n\nCrème brûlée is served daily.\n".encode("utf-8-sig"),
        "page.html": "<h1>Menü</h1><p>Crème brûlée.</p>".encode(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    results = await ingest_paths(KnowledgeBase(HashingEmbedder()), sessions, [tmp_path])
    errors = {Path(r.path).name: r.error for r in results if r.status == "failed"}
    assert errors == {
        "binary.csv": "looks like a binary file (it holds NUL bytes), not text",
        "binary.md": "looks like a binary file (it holds NUL bytes), not text",
        "bom_latin1.txt": "not UTF-8 text (byte 0xe9 on line 3): save it as UTF-8",
        "latin1.md": "not UTF-8 text (byte 0xe9 on line 1): save it as UTF-8",
        "random.txt": "not UTF-8 text (byte 0x80 on line 1): save it as UTF-8",
        "utf16.txt": "not UTF-8 text (UTF-16): save it as UTF-8",
    }
    chunks = await chunks_of(sessions)
    assert {(c.title, c.text) for c in chunks} == {
        ("Café", "Crème brûlée is served daily."),
        ("Menü", "Crème brûlée."),
    }


async def test_an_unreadable_csv_fails_alone_and_a_cr_only_one_reads(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    # A field over the csv module's size limit: csv.Error, not a traceback that stops the run.
    (tmp_path / "huge.csv").write_text('question,answer\nWhy?,"' + "x" * 200_000 + '"\n')
    # Old Mac Excel ends rows with a bare CR.
    (tmp_path / "mac.csv").write_bytes(b"question,answer\rDo you ship abroad?,Yes.\r")
    (tmp_path / "good.txt").write_text("Good text.")
    paths = [tmp_path / "huge.csv", tmp_path / "mac.csv", tmp_path / "good.txt"]
    results = await ingest_paths(KnowledgeBase(HashingEmbedder()), sessions, paths)
    assert [r.status for r in results] == ["failed", "added", "added"]
    assert (
        results[0].error == "huge.csv: not a readable CSV (field larger than field limit (131072))"
    )
    faq = [(c.section, c.text) for c in await chunks_of(sessions) if c.kind == "faq"]
    assert faq == [("Do you ship abroad?", "Yes.")]


async def test_a_parser_error_fails_its_file_alone_and_is_logged(
    sessions: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # html.parser asserts on an unknown marked section instead of raising a parse error.
    (tmp_path / "bad.html").write_text("<p>Hi</p><![bogus[ x ]]>")
    (tmp_path / "good.txt").write_text("Good text.")
    paths = [tmp_path / "bad.html", tmp_path / "good.txt"]
    results = await ingest_paths(KnowledgeBase(HashingEmbedder()), sessions, paths)
    assert [(r.status, r.error) for r in results] == [
        ("failed", "could not parse it: unknown status keyword 'bogus' in marked section"),
        ("added", ""),
    ]
    assert "bad.html: could not parse it (AssertionError)" in caplog.text
    assert [c.text for c in await chunks_of(sessions)] == ["Good text."]


async def test_database_errors_still_stop_the_run(
    sessions: SessionFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(repo, "replace_document", broken)
    (tmp_path / "good.txt").write_text("Good text.")
    with pytest.raises(OperationalError):
        await ingest_paths(KnowledgeBase(HashingEmbedder()), sessions, [tmp_path / "good.txt"])


async def test_a_folder_with_nothing_to_ingest_fails(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "other" / ".hidden.md").write_text("# secret\n\nnot for the KB")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "good.txt").write_text("Good text.")
    paths = [tmp_path / "empty", tmp_path / "docs", tmp_path / "other"]
    results = await ingest_paths(KnowledgeBase(HashingEmbedder()), sessions, paths)
    assert [(Path(r.path).name, r.status) for r in results] == [
        ("empty", "failed"),
        ("good.txt", "added"),
        ("other", "failed"),
    ]
    assert results[0].error == results[2].error == NO_FILES
    assert NO_FILES.startswith("no supported files found here (.csv, .htm, .html, .markdown, .md,")


async def test_quoting_an_answer_does_not_embed_its_question_again(
    sessions: SessionFactory, docs: Path
) -> None:
    embedded: list[str] = []

    class Counting(HashingEmbedder):
        async def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
            embedded.extend(texts)
            return await super().embed(texts)

    kb = KnowledgeBase(Counting())
    await ingest_paths(kb, sessions, [docs])
    question = "how long does a refund take"
    async with unit_of_work(sessions) as session:
        hits = await kb.search(session, question, context="I returned a lamp", k=4)
    await extract(Query(question), hits, kb=kb)
    assert embedded.count(question) == 1
