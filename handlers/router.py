"""Command router. Its registry is the single source of /help and of platform command menus."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from handlers.context import Context
from handlers.types import Incoming
from services.textforms import fold_width

Handler = Callable[[Context, str], Awaitable[None]]

# The answer to a sticker, a voice message, a file…: ``what`` is the adapter's name for it.
UNREADABLE = (
    "I can't read that ({what}) yet: I understand text messages and commands, "
    "and a caption counts as text. /help lists the commands."
)


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    summary: str
    handler: Handler
    args: str = ""
    args_required: bool = False
    # Whether the exchange joins the conversation's context (chat) or is kept apart (command).
    remember: bool = False

    @property
    def usage(self) -> str:
        return f"/{self.name} {self.args}".rstrip()


@dataclass(frozen=True, slots=True)
class Route:
    """What to do with one message: a handler and its argument text, or a one-line answer."""

    handler: Handler | None
    args: str = ""
    remember: bool = False
    kind: str = "chat"
    answer: str | None = None


def visible(text: str) -> bool:
    """Whether ``text`` shows anything: not only spaces and invisible format characters (zero
    width spaces, joiners, direction marks), which ``str.strip`` keeps."""
    return any(not c.isspace() and unicodedata.category(c) != "Cf" for c in text)


def split_command(text: str) -> tuple[str, str] | None:
    """'/gen@mybot hello' -> ('gen', 'hello'); None for text that is not a command. Any
    whitespace ends the name: a tab, a no-break or an ideographic space (CJK keyboards).
    A Chinese keyboard types the full-width "／ｈｅｌｐ": its name is folded, the arguments
    are passed on as typed."""
    match = _COMMAND.fullmatch(text)
    if match is None:
        return None
    slash, head, rest = match.groups()
    folded = fold_width(head).split("@", 1)[0]
    name = "".join(c for c in folded if unicodedata.category(c) != "Cf").lower()
    # "／" also opens kaomoji ("／(ㄒoㄒ)／"): only a command-like name makes it a command.
    if slash != "/" and not _NAME.fullmatch(name):
        return None
    return (name, rest.strip() if visible(rest) else "") if name else None


_COMMAND = re.compile(r"([/\uff0f])(\S+)\s*(.*)", re.DOTALL)
_NAME = re.compile(r"[a-z0-9_]+")


class Router:
    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}
        self._text: Handler | None = None
        self._actions: dict[str, Handler] = {}

    def command(
        self,
        name: str,
        *,
        summary: str,
        args: str = "",
        args_required: bool = False,
        remember: bool = False,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            if name in self._commands:
                raise ValueError(f"command /{name} registered twice")
            self._commands[name] = Command(name, summary, handler, args, args_required, remember)
            return handler

        return register

    def text(self, handler: Handler) -> Handler:
        """The handler for free text (anything that is not a command)."""
        self._text = handler
        return handler

    def action(self, prefix: str) -> Callable[[Handler], Handler]:
        """A handler for button presses whose data starts with ``prefix:``."""

        def register(handler: Handler) -> Handler:
            self._actions[prefix] = handler
            return handler

        return register

    @property
    def commands(self) -> list[Command]:
        return list(self._commands.values())

    def help_text(self) -> str:
        lines = ["**Commands**"]
        lines += [f"`{c.usage}` — {c.summary}" for c in self.commands]
        lines.append("Anything else you write is a chat message; I remember the conversation.")
        return "\n".join(lines)

    def route(self, incoming: Incoming) -> Route:
        if incoming.action is not None:
            prefix, _, data = incoming.action.partition(":")
            handler = self._actions.get(prefix)
            if handler is None:
                return Route(None, answer="That button has expired.")
            return Route(handler, data, kind="action")
        if incoming.attachments and not incoming.text.strip():
            answer = UNREADABLE.format(what=incoming.attachments[0])
            return Route(None, kind="command", answer=answer)
        if incoming.text.strip() and not visible(incoming.text):
            return Route(None, answer="Try /help to see what I can do.")
        parsed = split_command(incoming.text.strip())
        if parsed is None:
            if self._text is None:
                return Route(None, answer="Try /help to see what I can do.")
            return Route(self._text, incoming.text.strip(), remember=True)
        name, args = parsed
        command = self._commands.get(name)
        if command is None:
            return Route(None, kind="command", answer=f"Unknown command /{name}. Try /help.")
        if command.args_required and not args:
            return Route(
                None, kind="command", answer=f"Usage: `{command.usage}` — {command.summary}"
            )
        kind = "chat" if command.remember else "command"
        return Route(command.handler, args, remember=command.remember, kind=kind)
