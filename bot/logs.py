"""Logging set-up with a filter that replaces every configured secret before a line is written."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from pathlib import Path

REDACTED = "[redacted]"
# Telegram tokens travel inside every Bot API URL; catch them even when not configured here.
_TELEGRAM_TOKEN = re.compile(r"(?<![0-9])\d{6,12}:[A-Za-z0-9_-]{30,}")


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _TELEGRAM_TOKEN.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.redact(message), None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def configure_logging(level: str, secrets: Iterable[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    handler.set_name("switchboard")
    root = logging.getLogger()
    # Replace only our own handler, so a second call (tests, embedding) does not stack them.
    for old in [h for h in root.handlers if h.get_name() == "switchboard"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party request logs would repeat URLs (and with them tokens) at INFO.
    for noisy in ("httpx", "httpx2", "httpcore", "aiohttp.access", "openai", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_to_file(path: Path) -> None:
    """Send the log to ``path`` and keep only warnings on the terminal: in an interactive
    console chat, log lines and model-loading progress bars would break into the conversation."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if h.get_name() == "switchboard"]
    if not ours:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(ours[0].formatter)
    for redact in ours[0].filters:
        to_file.addFilter(redact)
    root.addHandler(to_file)
    ours[0].setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
