"""Split a document into retrievable chunks: sections, then paragraphs, packed to a size.

Sizes are in words (about 1.3 tokens each in English), which keeps a chunk inside MiniLM's
256-token window without a tokenizer. Chinese and Japanese have no spaces between words, so
there each character counts as a word: MiniLM's WordPiece makes one token of a Han character
(0.9 of a kana), so 160 of them are 160 tokens, a little under an English chunk's ~210. A
Hangul syllable counts as two (it makes 1.75 tokens). Text without such characters is sized,
split and joined exactly as before. Consecutive chunks of one section overlap a little, so
a sentence cut at a boundary is still whole in one of them. An FAQ row is always one chunk.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from services.kb.loaders import SourceDocument
from services.textforms import CJK_CHARS as CJK
from services.textforms import HANGUL_CHARS as HANGUL

MAX_WORDS = 160
OVERLAP_WORDS = 30
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_CJK = re.compile(f"[{CJK}]")
_HANGUL = re.compile(f"[{HANGUL}]")
# A CJK word: one character, or a run of other letters (a name, a number) within the word.
_CJK_UNIT = re.compile(f"[{CJK}]|[^\\s{CJK}]+")
# Chinese and Japanese sentence ends, with any closing quote, and often no space after them.
# Half-width ! ? and an ellipsis end a sentence only after a CJK character; a full-width
# full stop not before a digit (in "１．５" it is a decimal point).
_CJK_SENTENCE_END = re.compile(
    f"(?:[。！？；｡]|．(?![0-9０-９])|(?<=[{CJK}])[…⋯!?]+)+[」』”’）》〉】〕\"')\\]]*\\s*"
)


@dataclass(frozen=True, slots=True)
class ChunkDraft:
    """A chunk before embedding."""

    kind: str  # "passage" or "faq"
    section: str  # heading path, or the FAQ question
    text: str  # the passage, or the FAQ answer
    embed_text: str  # what the embedder sees


def split_sentences(text: str) -> list[str]:
    sentences = [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]
    return [part for s in sentences for part in _split_cjk(s)]


def _split_cjk(sentence: str) -> list[str]:
    """``sentence`` cut after each Chinese or Japanese sentence end (itself if it has none)."""
    parts, start = [], 0
    for end in _CJK_SENTENCE_END.finditer(sentence):
        parts.append(sentence[start : end.end()].strip())
        start = end.end()
    parts.append(sentence[start:].strip())
    return [p for p in parts if p]


def _size(text: str) -> int:
    """``text``'s length in words, a CJK character counting as a word (see the module doc)."""
    if not _CJK.search(text):
        return len(text.split())
    return sum(
        2 if _HANGUL.match(unit) else 1 for word in text.split() for unit in _CJK_UNIT.findall(word)
    )


def _join(parts: list[str]) -> str:
    """Sentences joined by a space, except between two CJK characters, which have none."""
    text = parts[0] if parts else ""
    for part in parts[1:]:
        tight = bool(text and part and _CJK.match(text[-1]) and _CJK.match(part[0]))
        text += ("" if tight else " ") + part
    return text


def _cut(sentence: str, words: int) -> tuple[str, str]:
    """``sentence`` split after its first ``words`` words (after at least one)."""
    if not _CJK.search(sentence):
        split = sentence.split()
        return " ".join(split[:words]), " ".join(split[words:])
    size = 0
    for unit in _CJK_UNIT.finditer(sentence):
        size += 2 if _HANGUL.match(unit.group()) else 1
        if size > words and unit.start() > 0:
            return sentence[: unit.start()].rstrip(), sentence[unit.start() :].lstrip()
    return sentence, ""


def _pieces(paragraph: str, max_words: int) -> Iterator[str]:
    """A paragraph as pieces of at most ``max_words``: whole sentences where possible."""
    if _size(paragraph) <= max_words:
        yield paragraph
        return
    piece: list[str] = []
    for whole in split_sentences(paragraph):
        sentence = whole
        while _size(sentence) > max_words:  # one enormous "sentence" (a table, a log): cut it
            if piece:
                yield _join(piece)
                piece = []
            head, sentence = _cut(sentence, max_words)
            yield head
        if not sentence:  # only when one character outweighs max_words
            continue
        if piece and _size(_join(piece)) + _size(sentence) > max_words:
            yield _join(piece)
            piece = []
        piece.append(sentence)
    if piece:
        yield _join(piece)


def _tail(text: str, words: int) -> str:
    """The last whole sentences of ``text`` within ``words``: the overlap of the next chunk."""
    kept: list[str] = []
    for sentence in reversed(split_sentences(text)):
        if _size(_join([sentence, *kept])) > words:
            break
        kept.insert(0, sentence)
    return _join(kept)


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
        for piece in (_pieces(p, piece_words) if _size(p) > max_words else [p])
    ]
    chunks: list[str] = []
    current: list[str] = []
    for piece in pieces:
        size = sum(_size(p) for p in current)
        if current and size + _size(piece) > max_words:
            chunks.append("\n\n".join(current))
            overlap = _tail(chunks[-1], overlap_words)
            current = [overlap] if overlap and _size(overlap) < max_words // 2 else []
            if current and sum(_size(p) for p in current) + _size(piece) > max_words:
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
