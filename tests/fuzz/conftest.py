"""What every fuzz test watches besides the HTTP status: error logs, tracebacks, and exceptions
that reach asyncio's handler (a task that died with nobody awaiting it)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator

import pytest

# uvicorn's own loggers do not propagate, so "Exception in ASGI application" is caught there.
_WATCHED = ("", "uvicorn", "uvicorn.error")


class ErrorTrap(logging.Handler):
    """Collects log records at ERROR and above, and any record that carries a traceback."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.problems: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            text = f"{record.name} {record.levelname}: {record.getMessage()}"
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.problems.append(text)

    def loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        exc = context.get("exception")
        self.problems.append(f"asyncio: {context.get('message')} {exc!r}")

    def check(self, *, full: bool = False) -> None:
        """Fails with what went wrong since the last check, and starts over."""
        # A task that failed unobserved is reported when it is collected; young garbage is
        # enough after one example (a full collection costs a third of a second here).
        gc.collect() if full else gc.collect(1)
        problems, self.problems = self.problems, []
        assert not problems, "\n\n".join(problems)


@pytest.fixture
def trap() -> Iterator[ErrorTrap]:
    """Installed on the root and uvicorn loggers and as the running loop's exception handler
    (once the test's loop runs: see ``watch_loop``)."""
    handler = ErrorTrap()
    for name in _WATCHED:
        logging.getLogger(name).addHandler(handler)
    try:
        yield handler
        handler.check(full=True)
    finally:
        for name in _WATCHED:
            logging.getLogger(name).removeHandler(handler)


def watch_loop(trap: ErrorTrap) -> None:
    """Routes the running loop's unhandled exceptions into ``trap``."""
    asyncio.get_running_loop().set_exception_handler(trap.loop_error)
