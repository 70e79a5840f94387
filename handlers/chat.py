"""Free-text chat with the conversation's stored history, and one-shot /gen."""

from __future__ import annotations

from collections.abc import Sequence

from handlers.context import Context
from handlers.feedback import feedback_buttons
from handlers.router import Router
from services.budget import fit_turns
from services.types import Turn


async def generate(ctx: Context, history: Sequence[Turn], text: str) -> None:
    """Stream the model's answer to ``text`` after ``history`` into the chat."""
    text_model = ctx.services.text
    config = ctx.services.generation
    turns = fit_turns(
        Turn("system", config.system_prompt) if config.system_prompt else None,
        history,
        Turn("user", text),
        context_window=text_model.context_window,
        reply_tokens=config.max_tokens,
        count=text_model.count_tokens,
    )
    chunks = text_model.stream(turns, max_tokens=config.max_tokens, temperature=config.temperature)
    async with ctx.responder.typing():
        answer = await ctx.reply_stream(chunks, buttons=feedback_buttons(ctx.incoming.event_id))
    if not answer.strip():
        await ctx.reply_text("I have no answer to that; could you rephrase it?")


def register(router: Router) -> None:
    @router.command(
        "gen",
        args="<prompt>",
        args_required=True,
        summary="generate text from a prompt, without our conversation's history",
    )
    async def gen(ctx: Context, args: str) -> None:
        await generate(ctx, [], args)

    @router.text
    async def chat(ctx: Context, text: str) -> None:
        await generate(ctx, ctx.history, text)
