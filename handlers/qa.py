"""/ask and free-form questions: answers from the knowledge base, with sources, or "I don't know".

The conversation's stored turns make a follow-up standalone before the search, and /ask joins
the conversation's context (``remember=True``) so the next follow-up can lean on it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from handlers.context import Context
from handlers.feedback import feedback_buttons
from handlers.router import Router
from handlers.types import Button, Reply
from services.budget import PER_TURN_OVERHEAD
from services.kb.knowledge import Hit, KnowledgeBase
from services.qa.answer import DONT_KNOW, Generate, Quote, Unknown, plan_answer
from services.qa.standalone import Query, combine, is_short, standalone_question
from services.types import ProviderError
from storage import repositories as repo
from storage.handoffs import BUTTON_EVENT_ID, asked_question, request_handoff
from storage.models import Message

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)

HANDOFF = "handoff"
NOT_YOURS = "That button has expired, or it belongs to someone else's question."
NO_KB = (
    "The knowledge base is not set up here (it needs the embeddings service). "
    "Ask me anything else, or try again later."
)
EMPTY_KB = "The knowledge base is empty: an administrator adds documents with `switchboard kb add`."
HANDED_OFF = "Done: I've passed your question to a person on the support team."
ALREADY_HANDED_OFF = "This question is already with the support team."
# How many of the conversation's recent turns go with a hand-off, for the person taking it.
HANDOFF_TRANSCRIPT_TURNS = 10


async def _with_footer(chunks: AsyncIterator[str], footer: str) -> AsyncIterator[str]:
    async for chunk in chunks:
        yield chunk
    yield f"\n\n{footer}"


async def answer_question(ctx: Context, question: str) -> None:
    """Answer ``question`` from the knowledge base, in the conversation's context."""
    kb, config = ctx.services.kb, ctx.services.qa
    if kb is None:
        await ctx.reply_text(NO_KB)
        return
    text_model = ctx.services.text
    async with ctx.responder.typing():
        query = await standalone_question(
            question, ctx.history, text=text_model if config.capable_model else None
        )
        async with ctx.reading() as session:
            hits = await _search(kb, session, query, config.top_k)
            if not query.context and not any(h.confident for h in hits):
                query, hits = await _lean_on_context(kb, session, query, hits, ctx, config.top_k)
            empty = not hits and await kb.size(session) == 0
        if empty:
            await ctx.reply_text(EMPTY_KB)
            return
        generation = ctx.services.generation
        plan = await plan_answer(
            query,
            hits,
            config=config,
            kb=kb,
            system_prompt=generation.system_prompt,
            # Only a generated answer needs the window (reading it may load a tokenizer).
            budget=(
                text_model.context_window - generation.max_tokens - 4 * PER_TURN_OVERHEAD
                if config.capable_model
                else 0
            ),
            count=text_model.count_tokens,
        )
    log.debug(
        "qa: %r -> %r, best %.3f, %s",
        question,
        query,
        hits[0].confidence if hits else float("nan"),
        type(plan).__name__,
    )
    buttons = feedback_buttons(ctx.incoming.event_id)
    if isinstance(plan, Unknown):
        handoff = Button("🙋 Ask a person", f"{HANDOFF}:{ctx.incoming.event_id[:BUTTON_EVENT_ID]}")
        await ctx.reply(Reply(text=DONT_KNOW, buttons=(handoff,)))
    elif isinstance(plan, Quote):
        await ctx.reply(Reply(text=plan.text, buttons=buttons))
    elif isinstance(plan, Generate):
        chunks = text_model.stream(
            plan.turns, max_tokens=generation.max_tokens, temperature=generation.temperature
        )
        async with ctx.responder.typing():
            await ctx.reply_stream(_with_footer(chunks, plan.footer), buttons=buttons)


async def _search(kb: KnowledgeBase, session: AsyncSession, query: Query, k: int) -> list[Hit]:
    return await kb.search(
        session, query.text, context=query.context, context_weight=query.context_weight, k=k
    )


async def _lean_on_context(
    kb: KnowledgeBase,
    session: AsyncSession,
    query: Query,
    hits: list[Hit],
    ctx: Context,
    k: int,
) -> tuple[Query, list[Hit]]:
    """A question that reads as standalone and finds nothing may still lean on the last
    exchange without saying so ("how long do I have?" after a question about returns): search
    it once more with that exchange. Only a short question is: a longer one names its subject,
    and a new, unanswerable question must not be answered from the last topic. Nor is an
    answer that the last reply already cited taken: it would only repeat that reply."""
    combined = combine(query.text, ctx.history)
    if not combined.context or not is_short(query.text):
        return query, hits
    leaning = await _search(kb, session, combined, k)
    confident = [h for h in leaning if h.confident]
    last_answer = next((t.text for t in reversed(ctx.history) if t.role == "assistant"), "")
    if confident and confident[0].source.citation not in last_answer:
        return combined, leaning
    return query, hits


async def kb_has_documents(ctx: Context) -> bool:
    if ctx.services.kb is None:
        return False
    async with ctx.reading() as session:
        return await ctx.services.kb.size(session) > 0


async def kb_knows(ctx: Context, text: str) -> bool:
    """Whether the knowledge base answers ``text`` (read as it stands) with confidence."""
    if ctx.services.kb is None:
        return False
    async with ctx.reading() as session:
        try:
            hits = await ctx.services.kb.search(session, text, k=ctx.services.qa.top_k)
        except ProviderError as exc:
            # Asked only for a message that reads like chat: chat needs no embeddings.
            log.warning("could not ask the knowledge base (%s); the message goes to chat", exc)
            return False
    return any(hit.confident for hit in hits)


def handoff_transcript(
    turns: Sequence[Message], *, user_id: int, shared: bool
) -> list[dict[str, str]]:
    """The recent turns a person taking a hand-off sees. In a group chat, only the asker's own
    turns and the bot's answers to them: the other members' words are theirs, not part of the
    asker's record, and their /forget must reach them."""
    if shared:
        mine = {t.event_id for t in turns if t.user_id == user_id}
        turns = [
            t for t in turns if t.user_id == user_id or (t.user_id is None and t.event_id in mine)
        ]
    return [{"role": t.role, "text": t.text} for t in turns]


def register(router: Router) -> None:
    @router.command(
        "ask",
        args="<question>",
        args_required=True,
        remember=True,
        summary="answer from the knowledge base, with sources (follow-ups work too)",
    )
    async def ask(ctx: Context, args: str) -> None:
        await answer_question(ctx, args)

    @router.action(HANDOFF)
    async def handoff(ctx: Context, data: str) -> None:
        question = await asked_question(
            ctx.session, conversation_id=ctx.conversation.id, user_id=ctx.user.id, event_id=data
        )
        if not question:
            # Forged, forgotten (/forget), or another group member's question: only the asker
            # passes their own words to a person.
            await ctx.reply(Reply(text=NOT_YOURS, private=True))
            return
        fresh = await request_handoff(
            ctx.session,
            conversation_id=ctx.conversation.id,
            user_id=ctx.user.id,
            event_id=data,
            question=question,
            transcript=handoff_transcript(
                await repo.context_messages(
                    ctx.session, conversation=ctx.conversation, limit=HANDOFF_TRANSCRIPT_TURNS
                ),
                user_id=ctx.user.id,
                shared=not ctx.incoming.is_private,
            ),
        )
        if fresh:
            # Also a "handoff" turn of the conversation, so its record shows when it happened;
            # it never joins the model's context.
            await repo.add_message(
                ctx.session,
                conversation=ctx.conversation,
                role="user",
                text=f"handoff requested for event {data}",
                kind=HANDOFF,
                user_id=ctx.user.id,
                event_id=ctx.incoming.event_id,
            )
            log.info("handoff requested: conversation %s, event %s", ctx.conversation.id, data)
        await ctx.reply(Reply(text=HANDED_OFF if fresh else ALREADY_HANDED_OFF, private=True))
