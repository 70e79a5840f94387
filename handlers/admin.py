"""/stats for admins, and /forget for everyone: delete all that is stored about you."""

from __future__ import annotations

from handlers.context import Context
from handlers.router import Router
from handlers.types import Button, Reply
from storage import usage as usage_repo
from storage.models import utcnow

FORGET = "forget"


def format_stats(stats: usage_repo.Stats) -> str:
    total = sum(stats.sentiment.values())
    mix = ", ".join(
        f"{label} {count * 100 // total}%" for label, count in sorted(stats.sentiment.items())
    )
    return "\n".join(
        [
            "**Switchboard stats**",
            f"- users: {stats.users}",
            f"- messages stored: {stats.messages}",
            f"- sentiment of user turns: {mix or 'none measured yet'}",
            f"- today (UTC): {stats.today_messages} messages, {stats.today_tokens} generated "
            f"tokens, {stats.today_images} images",
        ]
    )


def register(router: Router) -> None:
    @router.command("stats", summary="usage statistics (admins only)")
    async def stats(ctx: Context, args: str) -> None:
        if not ctx.is_admin:
            await ctx.reply(Reply(text="/stats is for administrators.", private=True))
            return
        figures = await usage_repo.stats(ctx.session, day=utcnow().date())
        await ctx.reply(Reply(text=format_stats(figures), private=True))

    @router.command("forget", summary="delete everything stored about you (asks first)")
    async def forget(ctx: Context, args: str) -> None:
        await ctx.reply(
            Reply(
                text="Delete all your messages, purchases, feedback and usage? "
                "This cannot be undone.",
                buttons=(
                    Button("Yes, delete everything", f"{FORGET}:yes"),
                    Button("No, keep it", f"{FORGET}:no"),
                ),
                private=True,
            )
        )

    @router.action(FORGET)
    async def confirm(ctx: Context, data: str) -> None:
        if data != "yes":
            await ctx.responder.send(Reply(text="Nothing was deleted.", private=True))
            return
        await usage_repo.forget_user(
            ctx.session, user_id=ctx.user.id, event_id=ctx.incoming.event_id
        )
        # Sent straight to the responder: storing it would write about the user again.
        await ctx.responder.send(Reply(text="Done: everything stored about you is deleted."))
