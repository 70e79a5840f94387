"""Read a support document into titled sections (or FAQ rows), whatever its format.

Supported: plain text, Markdown, HTML (stdlib parser), PDF (pypdf, one section per page) and
FAQ CSV files with ``question`` and ``answer`` columns. Text formats must be UTF-8.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from services.textforms import CJK_CHARS

FORMATS = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".csv": "faq",
}
SECTION_SEPARATOR = " › "


class UnsupportedDocument(ValueError):
    """The file cannot be read as a knowledge-base document; the message says why."""


@dataclass(frozen=True, slots=True)
class Section:
    """A run of text under one heading path."""

    heading: str  # the heading path, "" before the first heading
    text: str


@dataclass(frozen=True, slots=True)
class FaqEntry:
    """One row of an FAQ CSV."""

    question: str
    answer: str


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """A parsed file: its title and format, and its sections or FAQ rows."""

    title: str
    kind: str
    sections: tuple[Section, ...] = ()
    faq: tuple[FaqEntry, ...] = ()


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in FORMATS


def load(path: Path, data: bytes) -> SourceDocument:
    """Parse ``data``, the bytes of ``path``; the suffix picks the format."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise UnsupportedDocument(f"{path.name}: unsupported format (use {', '.join(FORMATS)})")
    fallback_title = path.stem.replace("_", " ").replace("-", " ").strip() or path.name
    if kind == "pdf":
        return _load_pdf(data, fallback_title)
    text = _decode(data)
    if kind == "faq":
        return SourceDocument(fallback_title, kind, faq=_load_faq(text, path.name))
    if kind == "html":
        title, sections = _load_html(text)
    elif kind == "md":
        title, sections = _load_markdown(text)
    else:
        title, sections = _load_text(text)
    kept = tuple(s for s in sections if s.text.strip())
    return SourceDocument(title or fallback_title, kind, sections=kept)


def _decode(data: bytes) -> str:
    """The text of a text-format file, which must be UTF-8 (a BOM is dropped). Guessing another
    encoding is unreliable, and a wrong guess or a replacement character would be stored and
    quoted in answers, so anything else fails the file."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise UnsupportedDocument("not UTF-8 text (UTF-32): save it as UTF-8")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UnsupportedDocument("not UTF-8 text (UTF-16): save it as UTF-8")
    if b"\x00" in data:
        raise UnsupportedDocument("looks like a binary file (it holds NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # exc.object is the data after any BOM.
        line = exc.object[: exc.start].count(b"\n") + 1
        raise UnsupportedDocument(
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line {line}): save it as UTF-8"
        ) from exc


# --- Markdown ------------------------------------------------------------------------------

_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^(=+|-+)\s*$")
# YAML front matter (static-site generators, docs tools): metadata, not text to answer from.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)


def _load_markdown(text: str) -> tuple[str, list[Section]]:
    title = ""
    if front := _FRONT_MATTER.match(text):
        text = text[front.end() :]
        if named := _FRONT_TITLE.search(front.group(1)):
            title = named.group(1).strip("'\"")
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    lines: list[str] = []

    def flush() -> None:
        sections.append(Section(SECTION_SEPARATOR.join(h for _, h in stack), "\n".join(lines)))
        lines.clear()

    def heading(level: int, name: str) -> None:
        nonlocal title
        flush()
        if level == 1 and not title:
            title = name  # the document's title is not repeated in every section path
            return
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, name))

    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        match = None if in_code else _ATX.match(line)
        setext = None if in_code else _SETEXT.match(line)
        if match:
            heading(len(match.group(1)), match.group(2))
        elif setext and lines and lines[-1].strip():
            name = lines.pop().strip()
            heading(1 if setext.group(1)[0] == "=" else 2, name)
        else:
            lines.append(line)
    flush()
    return title, sections


# --- plain text ----------------------------------------------------------------------------

# A short line with no sentence ending, standing after a blank line: a heading in a text file.
_TEXT_HEADING = re.compile(r"^[A-Z0-9][^.!?,;]{0,58}[^.!?,;\s]:?$")
# The same in Chinese or Japanese: 20 characters hold about as much as 8 English words.
_CJK_TEXT_HEADING = re.compile(
    rf"^[{CJK_CHARS}][^.!?,;。！？，；、．]{{0,18}}[^.!?,;\s。！？，；、．][:：]?$"
)
_TEXT_HEADING_WORDS = 8


def _heading_like(line: str) -> bool:
    return bool(_TEXT_HEADING.match(line) or _CJK_TEXT_HEADING.match(line))


def _load_text(text: str) -> tuple[str, list[Section]]:
    """Plain text has no markup, but support docs are often written as a title line, then
    short heading lines each opening its paragraphs. Those become the sections (and the first
    line the title) so that a passage holds one topic and its citation names it."""
    lines = text.splitlines()

    def heading_at(i: int) -> bool:
        line = lines[i].strip()
        return (
            (i == 0 or not lines[i - 1].strip())
            and len(line.split()) <= _TEXT_HEADING_WORDS
            and _heading_like(line)
            and i + 1 < len(lines)
            and bool(lines[i + 1].strip())
        )

    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    title = ""
    if (
        first is not None
        and _heading_like(lines[first].strip())
        and (first + 1 == len(lines) or not lines[first + 1].strip())
    ):
        title, lines = lines[first].strip(), lines[first + 1 :]
    sections: list[Section] = []
    heading, body = "", list[str]()
    for i, line in enumerate(lines):
        if heading_at(i):
            sections.append(Section(heading, "\n".join(body)))
            heading, body = line.strip().rstrip(":："), []
        else:
            body.append(line)
    sections.append(Section(heading, "\n".join(body)))
    return title, sections


# --- HTML ----------------------------------------------------------------------------------

_BLOCKS = {"p", "div", "li", "br", "tr", "section", "article", "blockquote", "pre", "table", "ul"}
_SKIPPED = {"script", "style", "noscript", "template", "nav", "footer", "head"}


class _HtmlSections(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.sections: list[Section] = []
        self._stack: list[tuple[int, str]] = []
        self._text: list[str] = []
        self._heading: list[str] | None = None
        self._heading_level = 0
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIPPED:
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading, self._heading_level = [], int(tag[1])
        elif tag in _BLOCKS:
            self._text.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIPPED:
            self._skip = max(0, self._skip - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            name = " ".join("".join(self._heading).split())
            level, self._heading = self._heading_level, None
            if level == 1 and not self.title:
                self.title = name
                return
            while self._stack and self._stack[-1][0] >= level:
                self._stack.pop()
            self._stack.append((level, name))
        elif tag in _BLOCKS:
            self._text.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = self.title or data.strip()
        elif self._skip:
            return
        elif self._heading is not None:
            self._heading.append(data)
        else:
            self._text.append(data)

    def _flush(self) -> None:
        text = "".join(self._text)
        paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
        self.sections.append(
            Section(
                SECTION_SEPARATOR.join(h for _, h in self._stack),
                "\n\n".join(p for p in paragraphs if p),
            )
        )
        self._text = []

    def finish(self) -> tuple[str, list[Section]]:
        self.close()
        self._flush()
        return self.title, self.sections


def _load_html(text: str) -> tuple[str, list[Section]]:
    parser = _HtmlSections()
    parser.feed(text)
    return parser.finish()


# --- PDF and FAQ CSV -----------------------------------------------------------------------


def _load_pdf(data: bytes, fallback_title: str) -> SourceDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
        metadata = reader.metadata
        title = str(metadata.get("/Title") or "").strip() if metadata is not None else ""
    except (PdfReadError, ValueError, KeyError) as exc:
        raise UnsupportedDocument(f"unreadable PDF: {exc}") from exc
    sections = tuple(
        Section(f"page {number}", text) for number, text in enumerate(pages, 1) if text.strip()
    )
    return SourceDocument(title or fallback_title, "pdf", sections=sections)


def _load_faq(text: str, name: str) -> tuple[FaqEntry, ...]:
    # newline="": the reader splits records itself, so a CR-only (old Mac Excel) file works.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = {c.strip().lower(): c for c in reader.fieldnames or [] if c}
        if "question" not in columns or "answer" not in columns:
            raise UnsupportedDocument(f"{name}: an FAQ CSV needs `question` and `answer` columns")
        entries = tuple(
            FaqEntry(
                " ".join((row.get(columns["question"]) or "").split()),
                (row.get(columns["answer"]) or "").strip(),
            )
            for row in reader
        )
    except csv.Error as exc:
        raise UnsupportedDocument(f"{name}: not a readable CSV ({exc})") from exc
    return tuple(e for e in entries if e.question and e.answer)
