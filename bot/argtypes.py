"""argparse types shared by the CLI's commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def whole_number(what: str, low: int = 1, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (no limit when None). Anything
    else is a usage error naming ``what``, not a traceback further on (an overflow in the
    database driver, a socket that cannot bind, a batch of 0 rows that imports nothing)."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if number < low or (high is not None and number > high):
            bounds = f"{low} or more" if high is None else f"{low} to {high}"
            raise argparse.ArgumentTypeError(f"{number} is not {what} ({bounds})")
        return number

    return parse
