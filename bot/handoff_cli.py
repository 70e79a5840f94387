"""`switchboard handoffs list|show|close`: the questions users passed to a person."""

from __future__ import annotations

import argparse
from typing import Any

from bot.settings import Settings
from storage.handoffs import HandoffView

PREVIEW_CHARS = 70


def add_parser(commands: Any) -> None:
    """Add the `handoffs` command to the CLI's subparsers."""
    handoffs = commands.add_parser(
        "handoffs",
        help='questions users passed to a person with "Ask a person"',
        description='Each "I don\'t know" offers "Ask a person"; a press stores the question '
        "with the conversation's recent turns here (and POSTs it to HANDOFF_WEBHOOK_URL when "
        "set). Close one once it is answered.",
    )
    actions = handoffs.add_subparsers(dest="handoffs_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="open hand-offs, oldest first")
    listing.add_argument("--all", action="store_true", help="closed ones too")
    show = actions.add_parser("show", help="one hand-off with its conversation")
    show.add_argument("id", type=int, metavar="ID")
    close = actions.add_parser("close", help="mark a hand-off answered")
    close.add_argument("id", type=int, metavar="ID")


def _status(h: HandoffView) -> str:
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
    return "\n".join(lines)


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
            if not await handoffs.close_handoff(session, handoff_id=args.id):
                print(f"hand-off #{args.id} was closed already")
                return 0
            print(f"closed hand-off #{args.id}")
            return 0
    finally:
        await engine.dispose()
