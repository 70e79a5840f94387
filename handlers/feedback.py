"""👍 / 👎 buttons under generated answers, stored in the feedback table."""

from __future__ import annotations

from handlers.context import Context
from handlers.router import Router
from handlers.types import Button, Reply
from storage import repositories as repo

PREFIX = "fb"
SCORES = {"up": 1, "down": -1}


def feedback_buttons(event_id: str) -> tuple[Button, ...]:
    """Buttons rating the answer to ``event_id``. Their data stays well under Telegram's 64 bytes
    for event ids up to 58 characters; longer ids are cut (the vote is then still stored)."""
    key = event_id[:58]
    return (Button("👍", f"{PREFIX}:up:{key}"), Button("👎", f"{PREFIX}:down:{key}"))


def register(router: Router) -> None:
    @router.action(PREFIX)
    async def vote(ctx: Context, data: str) -> None:
        direction, _, event_id = data.partition(":")
        if direction not in SCORES or not event_id:
            await ctx.reply(Reply(text="That button has expired.", private=True))
            return
        await repo.set_feedback(
            ctx.session,
            platform=ctx.incoming.platform,
            event_id=event_id,
            user_id=ctx.user.id,
            score=SCORES[direction],
        )
        await ctx.reply(Reply(text="Thanks for the feedback!", private=True))
