"""`switchboard handoffs list|show|answer|close`: the questions users passed to a person."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.argtypes import whole_number
from bot.settings import Settings
from storage.handoffs import HandoffView

PREVIEW_CHARS = 70
# The column is a 32-bit INTEGER on PostgreSQL: a larger number would overflow in the driver.
HANDOFF_ID = whole_number("a hand-off id", 1, 2**31 - 1)


def add_parser(commands: Any) -> None:
    """Add the `handoffs` command to the CLI's subparsers."""
    handoffs = commands.add_parser(
        "handoffs",
        help='questions users passed to a person with "Ask a person"',
        description='Each "I don\'t know" offers "Ask a person"; a press stores the question '
        "with the conversation's recent turns here (and POSTs it to HANDOFF_WEBHOOK_URL when "
        "set). Answer one and the bot sends the answer into the user's chat (Telegram, Slack); "
        "close one that was answered some other way.",
    )
    actions = handoffs.add_subparsers(dest="handoffs_command", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", help="open hand-offs and answers not yet sent, oldest first"
    )
    listing.add_argument("--all", action="store_true", help="closed ones too")
    show = actions.add_parser("show", help="one hand-off with its conversation")
    show.add_argument("id", type=HANDOFF_ID, metavar="ID")
    answer = actions.add_parser(
        "answer",
        help="answer a hand-off: the bot sends it into the user's chat, and closes the hand-off",
        description="The answer is stored at once and sent into the chat (thread, topic) the "
        "question came from by `switchboard run`, which retries until the platform takes it; "
        "it then joins the conversation, so the bot's next answers know it.",
    )
    answer.add_argument("id", type=HANDOFF_ID, metavar="ID")
    answer.add_argument("text", nargs="+", metavar="TEXT", help="the answer")
    answer.add_argument(
        "--by", metavar="NAME", help='who answers, shown as "NAME from the support team"'
    )
    close = actions.add_parser(
        "close",
        help="mark a hand-off answered some other way (also stops an answer that keeps failing)",
    )
    close.add_argument("id", type=HANDOFF_ID, metavar="ID")


def _status(h: HandoffView) -> str:
    if h.answer is not None:
        if h.answer_sent_at is not None:
            return "answered"
        if h.answer_due_at is None:
            return "answer not sent (closed)"
        return f"answer failing ({h.answer_error})" if h.answer_error else "answer queued"
    if h.closed_at is not None:
        return "closed"
    if h.delivered_at is not None:
        return "sent"
    return f"failing ({h.error})" if h.error else "stored"


def _where(h: HandoffView) -> str:
    chat = f"{h.platform}:{h.chat_id}" + (f"/{h.thread_id}" if h.thread_id else "")
    return f"{chat}  {h.user_name or h.user_id}"


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def render_list(views: list[HandoffView]) -> str:
    if not views:
        return "no hand-offs"
    return "\n".join(
        f"#{h.id:<5} {h.created_at:%Y-%m-%d %H:%M}  {_status(h):<8}  {_where(h)}  "
        f"{_one_line(h.question)!r}"
        for h in views
    )


def render_one(h: HandoffView) -> str:
    lines = [
        f"hand-off #{h.id}, {_status(h)}, asked {h.created_at:%Y-%m-%d %H:%M} UTC",
        f"where: {_where(h)}",
        f"question: {h.question or '(no longer stored)'}",
        "recent turns:" if h.transcript else "recent turns: none",
    ]
    lines += [f"  {turn['role']}: {turn['text']}" for turn in h.transcript]
    if h.answer is not None:
        lines.append(f"answer ({h.answered_by or 'support team'}): {h.answer}")
    return "\n".join(lines)


async def _answer(session: AsyncSession, handoff_id: int, text: str, *, by: str | None) -> int:
    from bot.handoff_answers import ERRORS, Outcome, record_answer

    outcome, found = await record_answer(session, handoff_id, text, by=by)
    if outcome is Outcome.QUEUED and found is not None:
        print(
            f"answer to hand-off #{handoff_id} stored; `switchboard run` sends it to "
            f"{found.platform} chat {found.chat_id} and closes the hand-off"
        )
        return 0
    where = f" ({found.platform} chat {found.chat_id})" if found is not None else ""
    print(f"hand-off #{handoff_id}{where}: {ERRORS[outcome]}")
    if outcome is Outcome.ANSWERED and found is not None:
        print(found.answer)
    return 1


async def run(settings: Settings, args: argparse.Namespace) -> int:
    from storage import handoffs
    from storage.db import create_engine, session_factory, unit_of_work

    engine = create_engine(settings.db_url)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            if args.handoffs_command == "list":
                print(render_list(await handoffs.list_handoffs(session, include_closed=args.all)))
                return 0
            found = await handoffs.get_handoff(session, handoff_id=args.id)
            if found is None:
                print(f"no hand-off #{args.id}")
                return 1
            if args.handoffs_command == "show":
                print(render_one(found))
                return 0
            if args.handoffs_command == "answer":
                return await _answer(session, args.id, " ".join(args.text), by=args.by)
            if not await handoffs.close_handoff(session, handoff_id=args.id):
                print(f"hand-off #{args.id} was closed already")
                return 0
            print(f"closed hand-off #{args.id}")
            return 0
    finally:
        await engine.dispose()
