"""Terminal chat through the same dispatch path as every other platform.

Interactive on a terminal (a prompt, streamed replies); on a pipe it reads one message per line,
prints the replies and exits at the end of input. Replies' Markdown is rendered: with ANSI styles on
a terminal (unless NO_COLOR is set, https://no-color.org), as plain text otherwise.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path
from typing import ClassVar, TextIO

from bot.platforms.console_render import MarkdownStream, render, sanitize
from handlers.middleware import NotStored, say_not_saved
from handlers.types import Button, Dispatch, Incoming, Reply

log = logging.getLogger(__name__)

PROMPT = "you › "


def to_incoming(line: str, *, user: str, pressable: Sequence[Button] = ()) -> Incoming:
    """A typed line; a button's number, while buttons are on screen, presses that button."""
    number = int(line) if line.isdecimal() and len(line) < 3 else 0
    pressed = pressable[number - 1].data if 0 < number <= len(pressable) else None
    return Incoming(
        platform="console",
        event_id=uuid.uuid4().hex,
        chat_id=user,
        user_id=user,
        user_name=user,
        text="" if pressed else line,
        action=pressed,
    )


def wants_styles(out: TextIO) -> bool:
    """ANSI styles only on a terminal, and not when NO_COLOR is set to anything."""
    return out.isatty() and not os.environ.get("NO_COLOR")


class ConsoleResponder:
    def __init__(
        self,
        out: TextIO,
        image_dir: Path,
        shown: list[Button] | None = None,
        *,
        styled: bool = False,
    ) -> None:
        self._out = out
        self._image_dir = image_dir
        self._styled = styled
        # The buttons last shown, which the next line can press by number (shared per console).
        self._shown = shown if shown is not None else []

    def _write(self, text: str) -> None:
        if text:
            self._out.write(text)
            self._out.flush()

    async def send(self, reply: Reply) -> None:
        if reply.image is not None:
            self._image_dir.mkdir(parents=True, exist_ok=True)
            path = self._image_dir / f"{uuid.uuid4().hex[:12]}.png"
            path.write_bytes(reply.image)
            self._write(f"[image saved to {path}]\n")
        if reply.text:
            self._write(render(reply.text, styled=self._styled) + "\n")
        if reply.buttons:
            self._show_buttons(reply.buttons)

    async def stream(self, chunks: AsyncIterator[str], *, buttons: tuple[Button, ...] = ()) -> str:
        parts: list[str] = []
        rendering = MarkdownStream(styled=self._styled)
        try:
            async for chunk in chunks:
                if not parts:
                    chunk = chunk.lstrip()
                parts.append(chunk)
                self._write(rendering.feed(chunk))
        finally:
            if parts:
                self._write(rendering.close() + "\n")
        if parts and buttons:
            self._show_buttons(buttons)
        return "".join(parts).strip()

    def _show_buttons(self, buttons: Sequence[Button]) -> None:
        self._shown[:] = buttons
        labels = (sanitize(b.label) for b in buttons)  # product names come from imported data
        self._write("  ".join(f"[{i}: {label}]" for i, label in enumerate(labels, 1)) + "\n")

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
        self._shown: list[Button] = []
        self._styled = wants_styles(self._out)

    def responder_for(self, incoming: Incoming) -> ConsoleResponder:
        return ConsoleResponder(self._out, self._image_dir, self._shown, styled=self._styled)

    @property
    def interactive(self) -> bool:
        return self._in.isatty()

    async def start(self, dispatch: Dispatch) -> None:
        """Runs until end of input (or Ctrl-D / Ctrl-C on a terminal)."""
        loop = asyncio.get_running_loop()
        responder = ConsoleResponder(self._out, self._image_dir, self._shown, styled=self._styled)
        if self.interactive:
            self._out.write(
                "Switchboard console chat. /help lists commands; a button's number presses it;"
                " Ctrl-D quits.\n"
            )
        while not self._stopping:
            if self.interactive:
                self._out.write(PROMPT)
                self._out.flush()
            line = await loop.run_in_executor(None, self._in.readline)
            if not line:
                break
            text = line.strip()
            if text:
                incoming = to_incoming(text, user=self._user, pressable=self._shown)
                self._shown.clear()  # pressed, or passed by: the next line is text again
                try:
                    await dispatch(incoming, responder)
                except NotStored as exc:
                    log.error("%s", exc)
                    await say_not_saved(responder)
                if not self.interactive:
                    self._out.write("\n")

    async def stop(self) -> None:
        self._stopping = True
