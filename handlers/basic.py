"""/start, /help and /reset."""

from __future__ import annotations

from handlers.context import Context
from handlers.router import Router
from storage import repositories as repo

WELCOME = (
    "Hi{name}! I'm Switchboard, an AI assistant. Write to me as you would to a person: "
    "I remember our conversation until you /reset it. /help lists everything I can do."
)


def register(router: Router) -> None:
    @router.command("start", summary="say hello and see what I can do")
    async def start(ctx: Context, args: str) -> None:
        name = f", {ctx.incoming.user_name}" if ctx.incoming.user_name else ""
        await ctx.reply_text(WELCOME.format(name=name))

    @router.command("help", summary="list the commands")
    async def help_(ctx: Context, args: str) -> None:
        await ctx.reply_text(ctx.router.help_text())

    @router.command("reset", summary="forget our conversation so far and start afresh")
    async def reset(ctx: Context, args: str) -> None:
        await repo.start_new_context(ctx.session, conversation=ctx.conversation)
        await ctx.reply_text("Done: I've started a fresh conversation.")
