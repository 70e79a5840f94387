"""The types every platform adapter and every handler share.

Adapters turn SDK events into :class:`Incoming` and render :class:`Reply` through a
:class:`Responder`; nothing here knows about any SDK.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True, slots=True)
class Button:
    """An inline button; ``data`` comes back to the bot as an :class:`Incoming` action."""

    label: str
    data: str


@dataclass(frozen=True, slots=True)
class Incoming:
    """One event from a platform, already translated by the adapter's ``to_incoming()``."""

    platform: str
    event_id: str
    chat_id: str
    user_id: str
    text: str
    thread_id: str | None = None
    user_name: str | None = None
    language: str | None = None
    # Set for button presses: the Button.data that was pressed; text is then empty.
    action: str | None = None
    attachments: tuple[str, ...] = ()
    is_private: bool = True
    # The Slack workspace (team id); None elsewhere. Used by the workspace allowlist.
    workspace_id: str | None = None

    def __post_init__(self) -> None:
        # Telegram and Slack send JSON, which can carry lone UTF-16 surrogates (\ud800) and
        # NUL characters (text pasted from a PDF); neither the store (PostgreSQL refuses NUL in
        # text) nor an outbound request can take them, so the message would fail wherever it
        # went next. They are mended here, where every platform passes.
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is not None and not _storable(value):
                object.__setattr__(self, name, well_formed(value))
        if not all(_storable(a) for a in self.attachments):
            object.__setattr__(self, "attachments", tuple(map(well_formed, self.attachments)))

    @property
    def conversation_key(self) -> tuple[str, str, str]:
        return (self.platform, self.chat_id, self.thread_id or "")

    def to_payload(self) -> dict[str, Any]:
        """The inbox's JSON form (read back by handlers.resume.incoming_from_payload). The
        fields are flat, so this skips `dataclasses.asdict`'s deep copy of each one."""
        payload = {f.name: getattr(self, f.name) for f in fields(self)}
        payload["attachments"] = list(self.attachments)
        return payload


_TEXT_FIELDS = (
    "event_id",
    "chat_id",
    "user_id",
    "text",
    "thread_id",
    "user_name",
    "language",
    "action",
    "workspace_id",
)


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def well_formed(text: str) -> str:
    """``text`` without NUL characters and with every lone surrogate replaced by U+FFFD (pairs
    are joined, as a UTF-16 decoder would)."""
    text = text.replace("\x00", "")
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler says. ``text`` is Markdown; each platform renders it natively."""

    text: str | None = None
    image: bytes | None = None
    buttons: tuple[Button, ...] = ()
    # Shown only to the asking user where the platform supports it: a Slack ephemeral message;
    # the answer to a button press becomes a Telegram callback notice.
    private: bool = False


class Responder(Protocol):
    """Sends replies into one chat or thread; created by the adapter per incoming event."""

    async def send(self, reply: Reply) -> None: ...

    async def stream(self, chunks: AsyncIterator[str], *, buttons: tuple[Button, ...] = ()) -> str:
        """Show text as it arrives, end with ``buttons`` under the final text, return the text."""
        ...

    def typing(self) -> AbstractAsyncContextManager[None]:
        """Show a 'working…' indicator for as long as the context is open."""
        ...


Dispatch = Callable[[Incoming, Responder], Awaitable[None]]


class Platform(Protocol):
    """A chat surface: started with the dispatch function, stopped on shutdown."""

    name: ClassVar[str]

    async def start(self, dispatch: Dispatch) -> None: ...

    async def stop(self) -> None: ...
