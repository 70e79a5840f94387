"""Markdown from the services for a terminal: ANSI styles on a tty, plain text on a pipe.

Telegram's parser (``telegram/markdown.py``) reads each line into styled spans; this module lays
them out for a terminal: bold, italic and struck text, code in cyan without its fences, headings in
bold, "• " bullets, a "│ " gutter for quotes and links as ``text (url)``. Without styles the layout
is the same, with no escape codes. Control characters from the text (ESC, CSI, BEL, ...) are
removed first in both modes, so neither a model nor a document can drive the operator's terminal.

A streamed reply is rendered as it arrives (``MarkdownStream``): what more text cannot restyle is
written at once, and a construct that may still close (an open ``**``, a backtick, a ``[``, a line
start that may yet be a heading, a list item or a fence) is held until it closes or its line ends.
What a stream writes shows the same as ``render`` of the whole text.
"""

from __future__ import annotations

import re

# The settled-prefix scan below must decide exactly as the parser does, so it uses the parser's
# own patterns and closing rule rather than copies that could drift.
from bot.platforms.telegram.markdown import (
    DELIMITERS,
    FENCE,
    LINK,
    QUOTE_LINE,
    SAFE_URL,
    Mark,
    Span,
    closing_delimiter,
    to_spans,
)

Style = frozenset[str]
Run = tuple[str, Style]  # text and the styles it is shown in

GUTTER = "│ "
PLAIN: Style = frozenset()
CODE: Style = frozenset({"code"})

# Style → (SGR on, SGR off). Each has its own "off", so closing one leaves the others on.
_SGR = {"bold": ("1", "22"), "italic": ("3", "23"), "strike": ("9", "29"), "code": ("36", "39")}
_STYLE_OF_MARK = {"b": "bold", "i": "italic", "s": "strike", "code": "code", "pre": "code"}
# C0 and C1 controls but tab and newline (a lone CR or a CRLF's CR goes too).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# A line start that more text may still turn into a fence, a rule, a heading or a list item.
_UNDECIDED = re.compile(
    r"\s{0,3}(?:`{1,2}|~{1,2}|#{1,6}|([-*_])(?:\s*\1)*\s*)|\s*(?:[-*+]|\d{1,9}[.)]?)?"
)
_NEVER = -1  # a delimiter that cannot open, whatever follows


def sanitize(text: str) -> str:
    """``text`` without the control characters that make terminal escape sequences."""
    return _CONTROL.sub("", text)


def render(markdown: str, *, styled: bool) -> str:
    """A whole reply for a terminal (``styled``) or a pipe; no trailing newline."""
    lines: list[list[Run]] = []
    fence: str | None = None
    for line in sanitize(markdown).split("\n"):
        runs, fence = _step(line, fence)
        if runs is not None:
            lines.append(runs)
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(_to_text(runs, styled=styled) for runs in lines)


class MarkdownStream:
    """Renders a reply chunk by chunk; ``feed`` and ``close`` return what to write now.

    Lines end at a newline; the current line's written part is always a prefix of how the whole
    line renders. Blank lines are held until more text follows them, so the output starts and ends
    like ``render``'s.
    """

    def __init__(self, *, styled: bool) -> None:
        self._styled = styled
        self._fence: str | None = None  # the open code block's fence, e.g. "```"
        self._line = ""  # the current line, not yet ended
        self._cut = 0  # how much of it is settled (rendered for good)
        self._shown = 0  # characters of its rendering written so far
        self._breaks = 0  # line breaks owed before the next text
        self._started = False

    def feed(self, chunk: str) -> str:
        *ended, self._line = (self._line + sanitize(chunk)).split("\n")
        return "".join([*(self._end(line) for line in ended), self._partial()])

    def close(self) -> str:
        """The rest at the end of the reply: an open construct is shown as it was written."""
        rest, self._line = self._end(self._line), ""
        return rest

    def _end(self, line: str) -> str:
        runs, self._fence = _step(line, self._fence)
        written = self._emit(runs or [])
        if runs is not None and (self._shown or self._started):
            self._breaks = 1 if self._shown else self._breaks + 1
        self._cut = self._shown = 0
        return written

    def _partial(self) -> str:
        line = self._line
        if self._fence is not None:
            # A line that may still be the closing fence is held; a code line is shown as it comes.
            closing = rf"\s{{0,3}}{re.escape(self._fence[0])}*\s*"
            return "" if re.fullmatch(closing, line) else self._emit([(line, CODE)])
        if FENCE.match(line) or _UNDECIDED.fullmatch(line):
            return ""
        cut = settled(line, start=self._cut)
        if cut == self._cut or _UNDECIDED.fullmatch(line[:cut]):  # e.g. "--- " of "--- **x"
            return ""
        self._cut = cut
        return self._emit(_line_runs(line[:cut]))

    def _emit(self, runs: list[Run]) -> str:
        new = _drop(runs, self._shown)
        if not new:
            return ""
        breaks = "\n" * self._breaks if self._started else ""
        self._breaks, self._started = 0, True
        self._shown += sum(len(text) for text, _ in new)
        return breaks + _to_text(new, styled=self._styled)


def _step(line: str, fence: str | None) -> tuple[list[Run] | None, str | None]:
    """One finished line: its runs (None for a fence line, which shows as nothing) and the code
    block's fence after it."""
    if fence is not None:
        if re.fullmatch(rf"\s{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*", line):
            return None, None
        return ([(line, CODE)] if line.strip() else []), fence
    opened = FENCE.match(line)
    if opened:
        return None, opened.group(1)
    return _line_runs(line), None


def _line_runs(line: str) -> list[Run]:
    """One line outside code blocks, keeping its indentation (nested lists)."""
    spans = to_spans(line)
    quote = QUOTE_LINE.match(line) is not None
    if not spans and not quote:
        return []
    indent = line[: len(line) - len(line.lstrip())]
    head: list[Run] = [(indent, PLAIN)] if indent else []
    if quote:
        head.append((GUTTER if spans else GUTTER.rstrip(), PLAIN))
    return head + _span_runs(spans)


def _span_runs(spans: list[Span]) -> list[Run]:
    runs: list[Run] = []
    i = 0
    while i < len(spans):
        key = _link_key(spans[i].marks)
        if key is None:
            runs.append((spans[i].text, _style(spans[i].marks)))
            i += 1
            continue
        end = i + 1
        while end < len(spans) and _link_key(spans[end].marks) == key:
            end += 1
        runs.extend(_link_runs(spans[i:end], key=key))
        i = end
    return runs


def _link_key(marks: tuple[Mark, ...]) -> tuple[Mark, ...] | None:
    """The marks up to a link's own: spans that share them are one link."""
    for index, (kind, _) in enumerate(marks):
        if kind == "a":
            return marks[: index + 1]
    return None


def _link_runs(label: list[Span], *, key: tuple[Mark, ...]) -> list[Run]:
    url, around = key[-1][1], _style(key[:-1])
    runs = [(span.text, _style(span.marks)) for span in label]
    # Always stripped, as the parser strips a line's last span: a link ending a line that is
    # still streaming shows the same as when the line goes on.
    runs[0] = (runs[0][0].lstrip(), runs[0][1])
    runs[-1] = (runs[-1][0].rstrip(), runs[-1][1])
    text = "".join(t for t, _ in runs)
    if text in ("", url):
        return [(url, around)]
    return [*runs, (f" ({url})", around)]


def _style(marks: tuple[Mark, ...]) -> Style:
    return frozenset(_STYLE_OF_MARK[kind] for kind, _ in marks if kind in _STYLE_OF_MARK)


def _drop(runs: list[Run], count: int) -> list[Run]:
    """``runs`` without their first ``count`` characters."""
    out: list[Run] = []
    for text, style in runs:
        if count >= len(text):
            count -= len(text)
            continue
        out.append((text[count:], style))
        count = 0
    return out


def _to_text(runs: list[Run], *, styled: bool) -> str:
    """Runs as ANSI-styled text (every style closed at the end), or as plain text."""
    if not styled:
        return "".join(text for text, _ in runs)
    out: list[str] = []
    active: Style = PLAIN
    for text, style in [*runs, ("", PLAIN)]:
        if not text and style:
            continue
        out.extend(f"\x1b[{_SGR[name][1]}m" for name in sorted(active - style))
        out.extend(f"\x1b[{_SGR[name][0]}m" for name in sorted(style - active))
        out.append(text)
        active = style
    return "".join(out)


# --- what of an unfinished line is settled --------------------------------------------------


def settled(line: str, *, start: int = 0) -> int:
    """How much of the unfinished ``line`` more text cannot restyle: the index of the first
    construct that may still open or close. ``start`` is a settled index to scan on from."""
    i = start
    while i < len(line):
        end = _unit_end(line, i)
        if end is None:
            return i
        # Links side by side merge into one, so a link is settled once what follows is known.
        if line[i] == "[" and end > i + 1 and (end == len(line) or line[end] == "["):
            return i
        i = end
    return i


def _unit_end(text: str, i: int) -> int | None:
    """Where the construct at ``text[i]`` ends (``i + 1`` for plain text), or None while more
    text could change it. Mirrors the parser's ``_inline_at``."""
    char = text[i]
    if char == "\\":  # an escape: the next character is literal
        return i + 2 if i + 1 < len(text) else None
    if char == "`":
        run = len(text) - i - len(text[i:].lstrip("`"))
        if i + run == len(text):
            return None
        end = text.find("`" * run, i + run)
        return end + run if end >= 0 else None
    if char == "[":
        return _link_end(text, i)
    if char in "*_~":
        return _emphasis_end(text, i)
    return i + 1


def _link_end(text: str, i: int) -> int | None:
    link = LINK.match(text, i)
    if link:
        return link.end() if SAFE_URL.match(link.group(2)) else i + 1
    close = text.find("]", i + 1)
    if close == i + 1 or (0 <= close < len(text) - 1 and text[close + 1] != "("):
        return i + 1  # "[]", or "[1] " (a citation): never a link
    return None


def _emphasis_end(text: str, i: int) -> int | None:
    for delimiter, _kind in DELIMITERS:
        if text.startswith(delimiter, i):
            end = _emphasis_close(text, i, delimiter=delimiter)
            if end != _NEVER:
                return end
        elif delimiter.startswith(text[i:]):  # "*" at the end may become "**"
            return None
    return i + 1


def _emphasis_close(text: str, i: int, *, delimiter: str) -> int | None:
    """The end of the emphasis opened at ``i``, None while unknown, or ``_NEVER``."""
    size = len(delimiter)
    after = i + size
    if after >= len(text):
        return None
    closer = closing_delimiter(text, i, delimiter=delimiter)
    if closer is not None:
        # Final once the character after the closer is known: it may lengthen the closing run
        # or, for "_" and "*", join it to a word.
        return closer + size if closer + size < len(text) else None
    # The parser's reasons an opener never opens; otherwise its closer has not come yet.
    in_words = delimiter[0] == "_" or size == 1
    cannot_open = (
        text[after].isspace()
        or (size == 1 and text[after] == delimiter)
        or (in_words and i > 0 and text[i - 1].isalnum())
    )
    return _NEVER if cannot_open else None
