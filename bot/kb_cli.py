"""`switchboard kb add|list|remove`: manage the knowledge base that /ask answers from."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bot.settings import Settings
from services.kb.loaders import FORMATS

FORMAT_LIST = ", ".join(sorted(FORMATS))
# Reads 50+ languages; downloaded from the Hugging Face hub on first use.
MULTILINGUAL_EXAMPLE = "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"


def add_parser(commands: Any) -> None:
    """Add the `kb` command to the CLI's subparsers."""
    kb = commands.add_parser(
        "kb",
        help="knowledge base: add, list and remove the documents /ask answers from",
        description="Documents are chunked on headings and paragraphs, embedded, and stored in "
        "the database; running bots see changes at their next question.",
    )
    actions = kb.add_subparsers(dest="kb_command", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        help=f"ingest files and folders ({FORMAT_LIST}); unchanged files are skipped",
        description=f"Ingests files and, recursively, the supported files ({FORMAT_LIST}) of "
        "folders. Text files must be UTF-8. An FAQ .csv needs `question` and `answer` columns; "
        "each row is one entry. "
        "Re-adding an unchanged file does nothing; a changed file, or one embedded by another "
        "EMBEDDING_MODEL, replaces its old chunks.",
    )
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    add.add_argument("--no-progress", action="store_true", help="no progress bar")
    actions.add_parser(
        "list", help="list the documents with their chunk counts, flagging other models' ones"
    )
    remove = actions.add_parser("remove", help="remove documents (a folder removes all under it)")
    remove.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="files, or folders (all under them)"
    )


async def run(settings: Settings, args: argparse.Namespace) -> int:
    # Imported here so that `switchboard --help` stays quick.
    from bot.model_services import build_embedder
    from services.kb.ingest import ingest_paths
    from services.kb.knowledge import KnowledgeBase
    from storage.db import create_engine, session_factory, unit_of_work

    engine = create_engine(settings.db_url)
    sessions = session_factory(engine)
    kb = KnowledgeBase(build_embedder(settings))
    try:
        if args.kb_command == "add":
            progress = False if args.no_progress else None
            results = await ingest_paths(kb, sessions, args.paths, progress=progress)
            for r in results:
                detail = r.error if r.status == "failed" else f"{r.chunks} chunks  {r.title}"
                print(f"{r.status:<11} {r.path}  {detail}")
                if r.unreadable:
                    print(
                        f"  warning: {r.unreadable} of its {r.chunks} chunks are in a script that"
                        f' {kb.model} cannot read, so questions about them get "I don\'t know".'
                        f" Set EMBEDDING_MODEL to a multilingual model ({MULTILINGUAL_EXAMPLE})"
                        " and add it again."
                    )
            statuses = ("added", "updated", "re-embedded", "unchanged", "failed")
            counts = {s: sum(r.status == s for r in results) for s in statuses}
            print(", ".join(f"{n} {s}" for s, n in counts.items() if n or s != "re-embedded"))
            # Any failed file fails the command, so that a deployment script notices.
            return 1 if counts["failed"] else 0
        async with unit_of_work(sessions) as session:
            if args.kb_command == "list":
                documents = await kb.documents(session)
                for d in documents:
                    # Only another model's documents say which: they are left out of answers.
                    other = "" if d.embedding_model == kb.model else _other_model(d.embedding_model)
                    print(f"{d.kind:<5} {d.chunk_count:>6} chunks  {d.title}  ({d.path}){other}")
                print(f"{len(documents)} documents, {sum(d.chunk_count for d in documents)} chunks")
                return 0
            removed = await kb.remove(session, args.paths)
            for path in removed:
                print(f"removed {path}")
            if not removed:
                print("nothing removed: no document at or under those paths (see `kb list`)")
                return 1
            return 0
    finally:
        await engine.dispose()


def _other_model(model: str | None) -> str:
    return f"  [embedded by {model or 'an unrecorded model'}: `kb add` it again]"
