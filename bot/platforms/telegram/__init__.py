"""Telegram through aiogram 3. No aiogram type leaves this package: the rest of Switchboard sees
`Incoming`, `Reply` and the `Platform` protocol only."""

from bot.platforms.telegram.incoming import to_incoming
from bot.platforms.telegram.limiter import Limits, Rate
from bot.platforms.telegram.platform import WEBHOOK_PATH, TelegramConfig, TelegramPlatform
from bot.platforms.telegram.responder import Pacing

__all__ = [
    "WEBHOOK_PATH",
    "Limits",
    "Pacing",
    "Rate",
    "TelegramConfig",
    "TelegramPlatform",
    "to_incoming",
]
