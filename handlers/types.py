"""The types every platform adapter and every handler share.

Adapters turn SDK events into :class:`Incoming` and render :class:`Reply` through a
:class:`Responder`; nothing here knows about any SDK.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import ClassVar, Protocol


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

    @property
    def conversation_key(self) -> tuple[str, str, str]:
        return (self.platform, self.chat_id, self.thread_id or "")


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
