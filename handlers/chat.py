"""Free-text chat with the conversation's stored history, and one-shot /gen."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from handlers.context import Context
from handlers.feedback import feedback_buttons
from handlers.router import Router
from services.budget import fit_turns
from services.textforms import is_chinese
from services.types import Turn

ENGLISH_ONLY = (
    "（提示：这个机器人的离线模型只会用英文回答。"
    "管理员设置 TEXT_PROVIDER=zhipuai 后即可用中文聊天。）\n"
    "(This bot's offline model answers in English only; an operator can set"
    " TEXT_PROVIDER=zhipuai for Chinese.)"
)
NOTED_CHATS = 10_000
_noted: OrderedDict[tuple[str, str], None] = OrderedDict()


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
    if config.english_only and is_chinese(text) and _first_time(ctx):
        await ctx.reply_text(ENGLISH_ONLY)


def _first_time(ctx: Context) -> bool:
    """Whether this chat has not had the English-only note yet (from this process)."""
    key = (ctx.incoming.platform, ctx.incoming.chat_id)
    if key in _noted:
        return False
    _noted[key] = None
    if len(_noted) > NOTED_CHATS:
        _noted.popitem(last=False)
    return True


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
