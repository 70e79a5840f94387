"""Markdown → Slack mrkdwn in Block Kit messages, split at Slack's limits. Pure functions."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from handlers.types import Button

SECTION_CHARS = 3000  # a section block's text
MESSAGE_BLOCKS = 50
# Slack truncates a message's `text` past 40,000 characters; the fallback text carries the
# whole message, so the sections of one message stay under it.
MESSAGE_CHARS = 39_000
ACTION_PREFIX = "switchboard:"
FENCE = "```"

_FENCE_LINE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_ORDERED = re.compile(r"^(\s*)(\d+)[.)]\s+(.*)$")
_QUOTE = re.compile(r"^>\s?(.*)$")
# Inline code, [text](url) / ![alt](url) links and <url> autolinks: kept out of emphasis.
_PROTECTED = re.compile(
    r"(?P<code>`[^`\n]+`)"
    r"|!?\[(?P<label>[^\]\n]+)\]\((?P<url>[^)\s]+)(?:\s+\"[^\"]*\")?\)"
    r"|<(?P<auto>(?:https?|mailto):[^>\s]+)>"
)
_BOLD_ITALIC = re.compile(r"\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)")
_ITALIC = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
# Private-use characters never occur in model output; they hold protected spans and bold
# markers while the rest of the line is rewritten.
_HOLD, _END, _BOLD_MARK = "\ue000", "\ue001", "\ue002"
_HELD = re.compile(f"{_HOLD}(\\d+){_END}")


class Kind(Enum):
    PROSE = "prose"
    CODE = "code"
    CODE_END = "code end"


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """One chat.postMessage worth: the fallback text (notifications) and the blocks."""

    text: str
    blocks: tuple[dict[str, Any], ...]


def escape(text: str) -> str:
    """Slack's three control characters, escaped as its docs require."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_LINKABLE = re.compile(r"(?:https?|mailto):", re.I)


def _link(url: str, label: str) -> str:
    if not _LINKABLE.match(url):
        # Slack reads <!channel|…>, <@U…|…> and <!subteam^…> as pings: a Markdown link from a
        # user, a document or a model must not become one. Only web and mail links are links.
        return escape(label)
    # `|` and `>` end Slack's link syntax early, so they are percent-encoded in the URL.
    safe_url = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{safe_url}|{escape(label)}>" if label != url else f"<{safe_url}>"


def _inline(text: str) -> str:
    held: list[str] = []

    def hold(match: re.Match[str]) -> str:
        if match["code"]:
            held.append(escape(match["code"]))
        elif match["auto"]:
            held.append(_link(match["auto"], match["auto"]))
        else:
            held.append(_link(match["url"], match["label"]))
        return f"{_HOLD}{len(held) - 1}{_END}"

    text = escape(_PROTECTED.sub(hold, text))
    text = _BOLD_ITALIC.sub(f"{_BOLD_MARK}_\\1_{_BOLD_MARK}", text)
    text = _BOLD.sub(lambda m: f"{_BOLD_MARK}{m[1] or m[2]}{_BOLD_MARK}", text)
    text = _ITALIC.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text).replace(_BOLD_MARK, "*")
    return _HELD.sub(lambda m: held[int(m[1])], text)


def _prose_line(line: str) -> str:
    if _RULE.match(line):
        return "──────────"
    if heading := _HEADING.match(line):
        inner = _inline(heading[1])
        return inner if "*" in inner else f"*{inner}*"
    if quote := _QUOTE.match(line):
        return "> " + _inline(quote[1])
    if bullet := _BULLET.match(line):
        level = len(bullet[1].expandtabs(4)) // 2
        return "    " * level + ("•" if level == 0 else "◦") + " " + _inline(bullet[2])
    if ordered := _ORDERED.match(line):
        level = len(ordered[1].expandtabs(4)) // 3
        return "    " * level + f"{ordered[2]}. " + _inline(ordered[3])
    return _inline(line)


_BACKTICK_RUN = re.compile(r"`(?=``)")


def to_lines(markdown: str) -> Iterator[tuple[str, Kind]]:
    """mrkdwn lines with their kind; code lines come without their fences."""
    fence: str | None = None
    for line in markdown.splitlines():
        opener = _FENCE_LINE.match(line)
        if fence is None and opener:
            fence = opener[1]  # the language tag after it is dropped: Slack would print it
        elif fence is not None and line.strip().startswith(fence):
            fence = None
            yield "", Kind.CODE_END
        elif fence is not None:
            # Backticks inside the block must not read as its closing fence to Slack.
            yield _BACKTICK_RUN.sub("`\u200b", escape(line)), Kind.CODE
        else:
            yield _prose_line(line), Kind.PROSE


def to_mrkdwn(markdown: str) -> str:
    """The whole of ``markdown`` as one mrkdwn text (captions, previews)."""
    sections = to_sections(markdown, limit=1 << 40)
    return sections[0] if sections else ""


def _cut(text: str, limit: int) -> int:
    """Where to break an over-long line: the last space, else not inside `&amp;` or `<…>`."""
    space = text.rfind(" ", limit // 2, limit)
    if space > 0:
        return space + 1
    cut = limit
    for opener, closer in (("&", ";"), ("<", ">")):
        start = text.rfind(opener, max(0, limit - 512), cut)
        if start > 0 and text.find(closer, start) >= cut:
            cut = start
    return cut


class _Packer:
    """Fills sections line by line; a code block cut between sections is closed and reopened,
    so every section renders on its own."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sections: list[str] = []
        self._lines: list[str] = []
        self._size = 0
        self._in_code = False

    def add(self, line: str, kind: Kind) -> None:
        code = kind is Kind.CODE
        if self._in_code and not code:
            self._close_code()
        if kind is Kind.CODE_END:
            return
        room = self.limit - len(FENCE) * 2 - 2
        while len(line) > room:
            cut = _cut(line, room)
            self._append(line[:cut].rstrip(" ") if not code else line[:cut], code=code)
            line = line[cut:]
        self._append(line, code=code)

    def _append(self, line: str, *, code: bool) -> None:
        opening = len(FENCE) + 1 if code and not self._in_code else 0
        closing = len(FENCE) + 1 if code else 0
        if self._lines and self._size + len(line) + 1 + opening + closing > self.limit:
            self.flush()
        if code and not self._in_code:
            self._push(FENCE)
            self._in_code = True
        self._push(line)

    def _push(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line) + 1

    def _close_code(self) -> None:
        self._push(FENCE)
        self._in_code = False

    def finish(self) -> list[str]:
        if self._in_code:
            self._close_code()
        self.flush()
        return self.sections

    def flush(self) -> None:
        reopen = self._in_code
        if reopen:
            self._close_code()
        text = "\n".join(self._lines).strip("\n")
        if text.strip():
            self.sections.append(text)
        self._lines, self._size = [], 0
        if reopen:
            self._push(FENCE)
            self._in_code = True


def to_sections(markdown: str, *, limit: int = SECTION_CHARS) -> list[str]:
    """The mrkdwn of ``markdown`` in pieces of at most ``limit`` characters."""
    packer = _Packer(limit)
    for line, kind in to_lines(markdown):
        packer.add(line, kind)
    return packer.finish()


def button_blocks(buttons: Sequence[Button]) -> list[dict[str, Any]]:
    """An actions block; each button's value is its Button.data, read back on a press."""
    if not buttons:
        return []
    elements = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": b.label, "emoji": True},
            "action_id": f"{ACTION_PREFIX}{i}",
            "value": b.data,
        }
        for i, b in enumerate(buttons)
    ]
    return [{"type": "actions", "elements": elements}]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _group(sections: list[str], *, reserve: int) -> list[list[str]]:
    """Sections into messages of at most MESSAGE_BLOCKS blocks and MESSAGE_CHARS characters;
    ``reserve`` blocks stay free in the last message (for buttons)."""
    groups: list[list[str]] = [[]]
    size = 0
    for section in sections:
        current = groups[-1]
        if current and (
            len(current) + 1 > MESSAGE_BLOCKS - reserve or size + len(section) > MESSAGE_CHARS
        ):
            groups.append([])
            size = 0
        groups[-1].append(section)
        size += len(section)
    return groups


def to_messages(markdown: str, *, buttons: Sequence[Button] = ()) -> list[SlackMessage]:
    """The messages that show ``markdown``; the buttons go under the last one."""
    actions = button_blocks(buttons)
    groups = _group(to_sections(markdown), reserve=len(actions))
    messages = [
        SlackMessage("\n".join(group), tuple(_section(s) for s in group)) for group in groups
    ]
    if actions:
        last = messages[-1]
        messages[-1] = SlackMessage(last.text or "\u200b", (*last.blocks, *actions))
    return [m for m in messages if m.blocks]
