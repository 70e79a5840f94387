"""The typed context a handler receives for one incoming message."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.types import Button, Incoming, Reply, Responder
from services.container import Services
from services.types import Turn
from storage.models import Conversation, User

if TYPE_CHECKING:
    from handlers.router import Router


@dataclass(slots=True)
class Context:
    incoming: Incoming
    responder: Responder
    services: Services
    router: Router
    # Opens this message's unit of work; see `session`.
    open_session: Callable[[], AsyncSession]
    # Detached rows: read their columns freely; change them through the repositories.
    user: User
    conversation: Conversation
    # The conversation's current context before this message, oldest first.
    history: list[Turn] = field(default_factory=list)
    # What the bot said, stored as assistant turns once the handler returns.
    said: list[str] = field(default_factory=list)
    is_admin: bool = False
    # Counted into the user's daily usage (quotas) once the handler returns.
    tokens: int = 0
    images: int = 0
    opened: AsyncSession | None = field(default=None, init=False)

    @property
    def session(self) -> AsyncSession:
        """This message's unit of work, opened on first use. It commits together with the
        answer's turns and the inbox's "done" mark, or not at all."""
        if self.opened is None:
            self.opened = self.open_session()
        return self.opened

    def reading(self) -> AsyncSession:
        """A session of its own for reads ahead of a model call; ``async with`` it, and its
        pooled connection is returned at the end of the block, before the model answers. (The
        unit of work, `session`, keeps its connection until the message is answered: slow
        models would drain the pool.)"""
        return self.open_session()

    async def reply(self, reply: Reply) -> None:
        await self.responder.send(reply)
        if reply.image is not None:
            self.images += 1
        if reply.text and not reply.private:
            self.said.append(reply.text)

    async def reply_text(self, text: str) -> None:
        await self.reply(Reply(text=text))

    async def reply_stream(
        self, chunks: AsyncIterator[str], *, buttons: tuple[Button, ...] = ()
    ) -> str:
        text = await self.responder.stream(chunks, buttons=buttons)
        if text:
            self.said.append(text)
            self.tokens += self.services.text.count_tokens(text)
        return text
