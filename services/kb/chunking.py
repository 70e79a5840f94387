"""Split a document into retrievable chunks: sections, then paragraphs, packed to a size.

Sizes are in words (about 1.3 tokens each in English), which keeps a chunk inside MiniLM's
256-token window without a tokenizer. Consecutive chunks of one section overlap a little, so
a sentence cut at a boundary is still whole in one of them. An FAQ row is always one chunk.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from services.kb.loaders import SourceDocument

MAX_WORDS = 160
OVERLAP_WORDS = 30
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


@dataclass(frozen=True, slots=True)
class ChunkDraft:
    """A chunk before embedding."""

    kind: str  # "passage" or "faq"
    section: str  # heading path, or the FAQ question
    text: str  # the passage, or the FAQ answer
    embed_text: str  # what the embedder sees


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def _pieces(paragraph: str, max_words: int) -> Iterator[str]:
    """A paragraph as pieces of at most ``max_words``: whole sentences where possible."""
    if len(paragraph.split()) <= max_words:
        yield paragraph
        return
    piece: list[str] = []
    for sentence in split_sentences(paragraph):
        words = sentence.split()
        while len(words) > max_words:  # one enormous "sentence" (a table, a log): cut it
            if piece:
                yield " ".join(piece)
                piece = []
            yield " ".join(words[:max_words])
            words = words[max_words:]
        if piece and len(" ".join(piece).split()) + len(words) > max_words:
            yield " ".join(piece)
            piece = []
        piece.append(" ".join(words))
    if piece:
        yield " ".join(piece)


def _tail(text: str, words: int) -> str:
    """The last whole sentences of ``text`` within ``words``: the overlap of the next chunk."""
    kept: list[str] = []
    for sentence in reversed(split_sentences(text)):
        if len(" ".join([sentence, *kept]).split()) > words:
            break
        kept.insert(0, sentence)
    return " ".join(kept)


def chunk_section(
    text: str, *, max_words: int = MAX_WORDS, overlap_words: int = OVERLAP_WORDS
) -> list[str]:
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    # Pieces of a long paragraph leave room for the overlap carried into their chunk.
    piece_words = max(max_words - overlap_words, max_words // 2)
    pieces = [
        piece
        for p in paragraphs
        if p
        for piece in (_pieces(p, piece_words) if len(p.split()) > max_words else [p])
    ]
    chunks: list[str] = []
    current: list[str] = []
    for piece in pieces:
        size = sum(len(p.split()) for p in current)
        if current and size + len(piece.split()) > max_words:
            chunks.append("\n\n".join(current))
            overlap = _tail(chunks[-1], overlap_words)
            current = [overlap] if overlap and len(overlap.split()) < max_words // 2 else []
            if current and sum(len(p.split()) for p in current) + len(piece.split()) > max_words:
                current = []
        current.append(piece)
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def chunk_document(
    document: SourceDocument, *, max_words: int = MAX_WORDS, overlap_words: int = OVERLAP_WORDS
) -> list[ChunkDraft]:
    drafts = [
        # Users phrase their questions like the FAQ's questions, so the question is embedded.
        ChunkDraft("faq", entry.question, entry.answer, entry.question)
        for entry in document.faq
    ]
    for section in document.sections:
        context = ". ".join(p for p in (document.title, section.heading) if p)
        for text in chunk_section(section.text, max_words=max_words, overlap_words=overlap_words):
            # The title and heading tell the embedder what a terse passage is about.
            embed_text = f"{context}: {text}" if context else text
            drafts.append(ChunkDraft("passage", section.heading, text, embed_text))
    return drafts
