"""Telegram HTML from spans, and splitting at Telegram's length limits.

Limits count UTF-16 code units of the visible text. A cut prefers, in order: a paragraph break,
a line break, a line break inside a code block (the block is closed and reopened), a space, any
space, and only then a hard cut. Every part is valid HTML on its own.
"""

from __future__ import annotations

import html
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import accumulate

from bot.platforms.telegram.markdown import Mark, Span, merge, to_spans, trim

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
# (separator, whether the cut may fall inside an entity), best first.
_CUTS = (("\n\n", False), ("\n", False), ("\n", True), (" ", False), (" ", True))
# Whether a separator (position, size) lies inside an entity.
_Inside = Callable[[int, int], bool]


@dataclass(frozen=True, slots=True)
class Part:
    """One message's worth of a reply: the HTML, and the same visible text without entities."""

    html: str
    text: str


def render(
    markdown: str, *, limit: int = MESSAGE_LIMIT, first_limit: int | None = None
) -> list[Part]:
    """Markdown as Telegram messages; the first part may have a smaller limit (a caption)."""
    return [
        to_part(spans) for spans in split(to_spans(markdown), limit=limit, first_limit=first_limit)
    ]


def to_part(spans: Sequence[Span]) -> Part:
    return Part(html=to_html(spans), text="".join(s.text for s in spans))


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def to_html(spans: Sequence[Span]) -> str:
    out: list[str] = []
    stack: list[Mark] = []
    for span in spans:
        common = 0
        while common < min(len(stack), len(span.marks)) and stack[common] == span.marks[common]:
            common += 1
        while len(stack) > common:
            out.append(_close(stack.pop()))
        for mark in span.marks[common:]:
            out.append(_open(mark))
            stack.append(mark)
        out.append(html.escape(span.text, quote=False))
    out.extend(_close(mark) for mark in reversed(stack))
    return "".join(out)


def _open(mark: Mark) -> str:
    kind, value = mark
    if kind == "a":
        return f'<a href="{html.escape(value, quote=True)}">'
    if kind == "pre":
        lang = f' class="language-{html.escape(value, quote=True)}"' if value else ""
        return f"<pre><code{lang}>"
    return f"<{kind}>"


def _close(mark: Mark) -> str:
    return "</code></pre>" if mark[0] == "pre" else f"</{mark[0]}>"


def split(
    spans: Sequence[Span], *, limit: int = MESSAGE_LIMIT, first_limit: int | None = None
) -> list[list[Span]]:
    """Cut ``spans`` into parts whose visible text fits the limits."""
    text = "".join(s.text for s in spans)
    owner = [i for i, span in enumerate(spans) for _ in span.text]
    units = list(accumulate((2 if ord(c) > 0xFFFF else 1 for c in text), initial=0))
    bounds: list[tuple[int, int]] = []
    start, budget = 0, first_limit or limit
    while units[-1] - units[start] > budget:
        end = max(bisect_right(units, units[start] + budget) - 1, start + 1)
        cut, skip = _cut(text, start, end=end, inside=partial(_inside, spans, owner))
        bounds.append((start, cut))
        start, budget = cut + skip, limit
    bounds.append((start, len(text)))
    parts = [trim(_slice(spans, (a, b))) for a, b in bounds]
    return [part for part in parts if part]


def _cut(text: str, start: int, *, end: int, inside: _Inside) -> tuple[int, int]:
    """Where to end the part that starts at ``start`` and may run to ``end``; and how many
    separator characters to drop there."""
    for separator, may_split in _CUTS:
        position = text.rfind(separator, start + 1, end + len(separator))
        while position > start:
            if may_split or not inside(position, len(separator)):
                return position, len(separator)
            position = text.rfind(separator, start + 1, position)
    return end, 0


def _inside(spans: Sequence[Span], owner: list[int], /, position: int, size: int) -> bool:
    """Whether the separator at ``position`` lies within one entity (shares a mark with a
    neighbour)."""

    def shared(left: int, right: int) -> bool:
        if left < 0 or right >= len(owner):
            return False
        return bool(set(spans[owner[left]].marks) & set(spans[owner[right]].marks))

    return shared(position - 1, position) or shared(position + size - 1, position + size)


def _slice(spans: Sequence[Span], bounds: tuple[int, int]) -> list[Span]:
    start, end = bounds
    out: list[Span] = []
    offset = 0
    for span in spans:
        a, b = max(start - offset, 0), min(end - offset, len(span.text))
        if a < b:
            out.append(Span(span.text[a:b], span.marks))
        offset += len(span.text)
        if offset >= end:
            break
    return merge(out)
