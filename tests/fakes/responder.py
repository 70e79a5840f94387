"""A Responder that collects what the bot would have shown, for assertions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from handlers.types import Button, Reply


class CollectingResponder:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.typing_count = 0

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.replies if r.text]

    async def send(self, reply: Reply) -> None:
        self.replies.append(reply)

    async def stream(self, chunks: AsyncIterator[str], *, buttons: tuple[Button, ...] = ()) -> str:
        text = "".join([chunk async for chunk in chunks]).strip()
        if text:
            self.replies.append(Reply(text=text, buttons=buttons))
        return text

    def typing(self) -> AbstractAsyncContextManager[None]:
        @asynccontextmanager
        async def indicator() -> AsyncIterator[None]:
            self.typing_count += 1
            yield

        return indicator()
