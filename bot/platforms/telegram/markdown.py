"""Markdown from the services as styled spans: the one model that rendering and splitting share.

A span is visible text plus the marks (entities) around it, outermost first. Telegram counts a
message's length on the visible text, after entities are parsed, so the splitter works on spans
and each part is serialised to HTML on its own (closing and reopening what it cuts through).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (kind, value): ("b", ""), ("a", "https://…"), ("pre", "python"), ("code", ""), ("blockquote", "")
Mark = tuple[str, str]

CODE: Mark = ("code", "")
QUOTE: Mark = ("blockquote", "")

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^(\s*)(\d{1,9}[.)])\s+(.*)$")
QUOTE_LINE = re.compile(r"^\s{0,3}>\s?(.*)$")
_RULE = re.compile(r"^\s{0,3}([-*_])(?:\s*\1){2,}\s*$")
LINK = re.compile(r"\[([^\]\n]+)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"\n]*\")?\s*\)")
SAFE_URL = re.compile(r"^(?:https?://|tg://|mailto:)", re.IGNORECASE)
_ESCAPABLE = set("\\`*_{}[]()#+-.!~|<>")
# Longest first, so "**" is tried before "*".
DELIMITERS = (("**", "b"), ("__", "b"), ("~~", "s"), ("*", "i"), ("_", "i"))


@dataclass(frozen=True, slots=True)
class Span:
    text: str
    marks: tuple[Mark, ...] = ()


@dataclass(frozen=True, slots=True)
class _Line:
    spans: list[Span]
    # Lines of one code block or one quote share a block id, so the newline between them
    # stays inside the entity.
    block: tuple[int, Mark] | None = None


def to_spans(markdown: str) -> list[Span]:
    """Parse the Markdown the models write into merged, trimmed spans."""
    lines = _lines(markdown.replace("\r\n", "\n").split("\n"))
    spans: list[Span] = []
    for index, line in enumerate(lines):
        if index:
            shared = line.block is not None and line.block == lines[index - 1].block
            spans.append(Span("\n", (line.block[1],) if shared and line.block else ()))
        spans.extend(line.spans)
    return trim(merge(spans))


def _lines(raw: list[str]) -> list[_Line]:
    out: list[_Line] = []
    i = 0
    while i < len(raw):
        fence = FENCE.match(raw[i])
        if fence:
            i = _code_block(raw, i, fence=fence, out=out)
            continue
        quote = QUOTE_LINE.match(raw[i])
        if quote:
            previous = out[-1].block if out else None
            block = previous if previous and previous[1] == QUOTE else (i, QUOTE)
            out.append(_Line(_inline(quote.group(1), (QUOTE,)), block))
        else:
            out.append(_Line(_block_line(raw[i])))
        i += 1
    return out


def _code_block(raw: list[str], start: int, *, fence: re.Match[str], out: list[_Line]) -> int:
    """Append the lines of the block opened at ``start``; an unclosed block (a reply still
    streaming) runs to the end. Returns the index after the closing fence."""
    marker, mark = fence.group(1), ("pre", fence.group(2))
    closing = re.compile(rf"^\s{{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$")
    end = start + 1
    while end < len(raw) and not closing.match(raw[end]):
        end += 1
    body = raw[start + 1 : end]
    while end == len(raw) and body and not body[-1].strip():
        body.pop()
    out.extend(_Line([Span(line, (mark,))] if line else [], (start, mark)) for line in body)
    return end + 1


def _block_line(line: str) -> list[Span]:
    if _RULE.match(line):
        return [Span("———")]
    heading = _HEADING.match(line)
    if heading:
        return _inline(heading.group(1), (("b", ""),))
    bullet = _BULLET.match(line)
    if bullet:
        return [Span(f"{bullet.group(1)}• "), *_inline(bullet.group(2), ())]
    numbered = _NUMBERED.match(line)
    if numbered:
        return [Span(f"{numbered.group(1)}{numbered.group(2)} "), *_inline(numbered.group(3), ())]
    return _inline(line, ())


def _inline(text: str, marks: tuple[Mark, ...]) -> list[Span]:
    out: list[Span] = []
    plain: list[str] = []
    i = 0
    while i < len(text):
        found = _inline_at(text, i, marks=marks)
        if found is None:
            if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPABLE:
                i += 1
            plain.append(text[i])
            i += 1
            continue
        spans, i = found
        if plain:
            out.append(Span("".join(plain), marks))
            plain = []
        out.extend(spans)
    if plain:
        out.append(Span("".join(plain), marks))
    return out


def _inline_at(text: str, i: int, *, marks: tuple[Mark, ...]) -> tuple[list[Span], int] | None:
    """The styled spans starting at ``text[i]`` and the index after them, if any start there."""
    if text[i] == "`":
        return _code_span(text, i, marks=marks)
    if text[i] == "[":
        link = LINK.match(text, i)
        if link and SAFE_URL.match(link.group(2)):
            return _inline(link.group(1), (*marks, ("a", link.group(2)))), link.end()
        return None
    for delimiter, kind in DELIMITERS:
        if text.startswith(delimiter, i):
            end = closing_delimiter(text, i, delimiter=delimiter)
            if end is not None:
                inner = text[i + len(delimiter) : end]
                # Bold inside bold (a heading's **Title**) adds nothing, but its markers go.
                nested = marks if (kind, "") in marks else (*marks, (kind, ""))
                return _inline(inner, nested), end + len(delimiter)
    return None


def _code_span(text: str, i: int, *, marks: tuple[Mark, ...]) -> tuple[list[Span], int] | None:
    run = len(text[i:]) - len(text[i:].lstrip("`"))
    end = text.find("`" * run, i + run)
    if end < 0 or end == i + run:
        return None
    # Telegram lets no entity but a quote contain code, and code contain nothing.
    outer = tuple(m for m in marks if m == QUOTE)
    return [Span(text[i + run : end].strip() or " ", (*outer, CODE))], end + run


def closing_delimiter(text: str, i: int, *, delimiter: str) -> int | None:
    """Where the emphasis opened at ``i`` closes, by CommonMark's rules of thumb: the opener is
    followed and the closer preceded by non-space, and ``_`` never works inside a word."""
    size, char = len(delimiter), delimiter[0]
    after = i + size
    if after >= len(text) or text[after].isspace():
        return None
    if size == 1 and text[after] == char:
        return None
    # Inside words "_" and a single "*" are literal: snake_case names, 2*3*4.
    in_words = char == "_" or size == 1
    if in_words and i > 0 and text[i - 1].isalnum():
        return None
    j = text.find(delimiter, after + 1)
    while j >= 0:
        # The closer is the last delimiter of a run, so "***x***" is bold around italic.
        while text.startswith(char, j + size):
            j += 1
        word_follows = in_words and j + size < len(text) and text[j + size].isalnum()
        if not text[j - 1].isspace() and not word_follows:
            return j
        j = text.find(delimiter, j + size)
    return None


def merge(spans: list[Span]) -> list[Span]:
    """Join neighbours with the same marks, drop empty spans."""
    out: list[Span] = []
    for span in spans:
        if not span.text:
            continue
        if out and out[-1].marks == span.marks:
            out[-1] = Span(out[-1].text + span.text, span.marks)
        else:
            out.append(span)
    return out


def trim(spans: list[Span]) -> list[Span]:
    """Strip blank space at both ends, except inside code, where indentation matters."""
    out = list(spans)
    while out and not _is_code(out[0]) and not out[0].text.strip():
        out.pop(0)
    while out and not _is_code(out[-1]) and not out[-1].text.strip():
        out.pop()
    if out and not _is_code(out[0]):
        out[0] = Span(out[0].text.lstrip(), out[0].marks)
    if out and not _is_code(out[-1]):
        out[-1] = Span(out[-1].text.rstrip(), out[-1].marks)
    return out


def _is_code(span: Span) -> bool:
    return any(kind in ("pre", "code") for kind, _ in span.marks)
