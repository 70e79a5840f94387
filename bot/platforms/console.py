"""Terminal chat through the same dispatch path as every other platform.

Interactive on a terminal (a prompt, streamed replies); on a pipe it reads one message per line,
prints the replies and exits at the end of input.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path
from typing import ClassVar, TextIO

from handlers.middleware import NotStored, say_not_saved
from handlers.types import Button, Dispatch, Incoming, Reply

log = logging.getLogger(__name__)

PROMPT = "you › "


def to_incoming(line: str, *, user: str) -> Incoming:
    return Incoming(
        platform="console",
        event_id=uuid.uuid4().hex,
        chat_id=user,
        user_id=user,
        user_name=user,
        text=line,
    )


class ConsoleResponder:
    def __init__(self, out: TextIO, image_dir: Path) -> None:
        self._out = out
        self._image_dir = image_dir

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    async def send(self, reply: Reply) -> None:
        if reply.image is not None:
            self._image_dir.mkdir(parents=True, exist_ok=True)
            path = self._image_dir / f"{uuid.uuid4().hex[:12]}.png"
            path.write_bytes(reply.image)
            self._write(f"[image saved to {path}]\n")
        if reply.text:
            self._write(reply.text.rstrip() + "\n")
        if reply.buttons:
            self._write("  ".join(f"[{b.label}]" for b in reply.buttons) + "\n")

    async def stream(self, chunks: AsyncIterator[str], *, buttons: tuple[Button, ...] = ()) -> str:
        parts: list[str] = []
        try:
            async for chunk in chunks:
                if not parts:
                    chunk = chunk.lstrip()
                parts.append(chunk)
                self._write(chunk)
        finally:
            if parts:
                self._write("\n")
        if parts and buttons:
            self._write("  ".join(f"[{b.label}]" for b in buttons) + "\n")
        return "".join(parts).strip()

    def typing(self) -> AbstractAsyncContextManager[None]:
        return nullcontext()


class ConsolePlatform:
    name: ClassVar[str] = "console"

    def __init__(
        self,
        *,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        image_dir: Path = Path("var/images"),
        user: str | None = None,
    ) -> None:
        self._in = stdin or sys.stdin
        self._out = stdout or sys.stdout
        self._image_dir = image_dir
        self._user = user or getpass.getuser()
        self._stopping = False

    def responder_for(self, incoming: Incoming) -> ConsoleResponder:
        return ConsoleResponder(self._out, self._image_dir)

    @property
    def interactive(self) -> bool:
        return self._in.isatty()

    async def start(self, dispatch: Dispatch) -> None:
        """Runs until end of input (or Ctrl-D / Ctrl-C on a terminal)."""
        loop = asyncio.get_running_loop()
        responder = ConsoleResponder(self._out, self._image_dir)
        if self.interactive:
            self._out.write("Switchboard console chat. /help lists commands; Ctrl-D quits.\n")
        while not self._stopping:
            if self.interactive:
                self._out.write(PROMPT)
                self._out.flush()
            line = await loop.run_in_executor(None, self._in.readline)
            if not line:
                break
            text = line.strip()
            if text:
                try:
                    await dispatch(to_incoming(text, user=self._user), responder)
                except NotStored as exc:
                    log.error("%s", exc)
                    await say_not_saved(responder)
                if not self.interactive:
                    self._out.write("\n")

    async def stop(self) -> None:
        self._stopping = True
