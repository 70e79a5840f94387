"""End-to-end support conversations against a small shop's docs: are the answers sourced right?

    .venv/bin/python bench/support_check.py [--verbose]

Builds the app as `switchboard chat` does (default local models: the packaged MiniLM
embeddings, SmolLM2-135M from MODELS_DIR, answers quoted), on a temporary SQLite database,
ingests bench/data/support/docs with `kb add`'s code, and sends the 72 lines of
bench/data/support/conversations.csv through the dispatcher in order, as one console user in
one chat (runs A..K continue one conversation; /reset lines reset its context). Each graded
reply is judged by the citation under "Sources:" against the hand-written expected one: for an
answerable question correct, wrong source, refused ("I don't know") or misrouted (a chat
reply); for one the docs do not answer honest ("I don't know") or unrelated quote; for small
talk a chat reply. Only the source is checked, not the wording. Caveat: we wrote the
conversations and the docs, and the product was changed after a first run on them, so this is
a regression check, not an unbiased estimate of accuracy on real customers' questions.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from bot.compose import App, build_app
from bot.migrate import upgrade
from bot.platforms.console import to_incoming
from bot.settings import Settings, TextProvider
from handlers.middleware import NotStored
from handlers.types import Button, Reply
from services.kb.ingest import ingest_paths
from services.kb.knowledge import Source
from services.qa.answer import DONT_KNOW
from services.qa.standalone import is_follow_up
from storage.db import unit_of_work
from storage.knowledge import all_chunks

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "support"
# Where the passage threshold is calibrated: two made-up companies' docs and questions.
# bench/data/support-heldout is kept for the final figure.
DEV_SETS = [DATA, ROOT / "bench" / "data" / "support-dev2"]
USER = "support-check"
NOT_GRADED = "command"
T = TypeVar("T")

COMMAND = re.compile(r"^/ask\s+")
# Where a section is a heading path ("Returns and refunds › Exchanges"), its last heading
# names it well enough.
HEADING_JOIN = " › "
ANSWERABLE = ("correct", "wrong source", "refused", "misrouted")
UNANSWERABLE = ("honest", "unrelated quote", "chat reply")
SMALL_TALK = ("chat", "other")


@dataclass(frozen=True, slots=True)
class Line:
    run: str
    message: str
    expected: str  # "command", "chat", "unknown", or citations joined by " | "


@dataclass(frozen=True, slots=True)
class Result:
    line: Line
    outcome: str
    got: str  # the reply in short: its citations, "I don't know", or the start of a chat reply


@dataclass(slots=True)
class CollectingResponder:
    """What one message got back, in order; shown buttons can be pressed by number next."""

    texts: list[str] = field(default_factory=list)
    shown: list[Button] = field(default_factory=list)

    async def send(self, reply: Reply) -> None:
        if reply.text:
            self.texts.append(reply.text.strip())
        if reply.buttons:
            self.shown[:] = reply.buttons

    async def stream(self, chunks: AsyncIterator[str], *, buttons: tuple[Button, ...] = ()) -> str:
        text = "".join([chunk async for chunk in chunks]).strip()
        if text:
            self.texts.append(text)
            if buttons:
                self.shown[:] = buttons
        return text

    def typing(self) -> AbstractAsyncContextManager[None]:
        return nullcontext()


def read_lines(path: Path) -> list[Line]:
    with path.open(newline="", encoding="utf-8") as file:
        return [Line(r["run"], r["message"], r["expected"].strip()) for r in csv.DictReader(file)]


def alternatives(expected: str) -> list[str]:
    return [part.strip() for part in expected.split(" | ")]


def matches(citation: str, wanted: str) -> bool:
    """``wanted`` is a document title (any section will do) or "Title — Section"."""
    title, _, section = citation.partition(" — ")
    if " — " not in wanted:
        return title == wanted
    want_title, _, want_section = wanted.partition(" — ")
    return title == want_title and want_section in (section, section.split(HEADING_JOIN)[-1])


def cited(text: str, known: set[str]) -> list[str] | None:
    """The citations of a knowledge-base answer; None for any other reply. The small chat
    model sometimes writes a "Source:" footer of its own, so every line must name a real one."""
    _, found, footer = text.rpartition("\n\nSources:\n")
    if not found:
        return None
    citations = [line.partition("] ")[2] for line in footer.splitlines() if line.startswith("[")]
    return citations if citations and all(c in known for c in citations) else None


def grade(line: Line, texts: Sequence[str], known: set[str]) -> str:
    answers = [c for t in texts if (c := cited(t, known)) is not None]
    refused = any(t.startswith(DONT_KNOW) for t in texts)
    if line.expected == "chat":
        return "other" if answers or refused else "chat"
    if line.expected == "unknown":
        return "unrelated quote" if answers else "honest" if refused else "chat reply"
    if answers:
        wanted = alternatives(line.expected)
        hit = any(matches(c, w) for citations in answers for c in citations for w in wanted)
        return "correct" if hit else "wrong source"
    return "refused" if refused else "misrouted"


def summary(texts: Sequence[str], known: set[str]) -> str:
    cites = [c for t in texts for c in cited(t, known) or []]
    if cites:
        return "; ".join(cites)
    if any(t.startswith(DONT_KNOW) for t in texts):
        return "I don't know"
    return "chat: " + " ".join(" ".join(texts).split())[:70]


def check_expected(lines: Sequence[Line], known: set[str]) -> None:
    """A typo in the CSV would silently count as a wrong source; refuse to run instead."""
    for line in lines:
        if line.expected in (NOT_GRADED, "chat", "unknown"):
            continue
        for wanted in alternatives(line.expected):
            if not any(matches(c, wanted) for c in known):
                raise SystemExit(f"conversations.csv, run {line.run}: no source {wanted!r}")


def settings(
    data_dir: Path,
    *,
    models_dir: Path,
    device: str,
    temperature: float,
    embedding_model: str | None = None,
) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        database_url="",
        MODELS_DIR=models_dir,
        model_device=device,
        model_host_url=None,
        text_provider=TextProvider.LOCAL,
        text_fallbacks=[],
        text_model=None,
        embedding_model=embedding_model,
        text_model_capable=None,
        text_temperature=temperature,
        log_level="WARNING",
    )


async def known_citations(app: App) -> set[str]:
    async with unit_of_work(app.sessions) as session:
        chunks = await all_chunks(session)
    return {Source(c.title, c.section, c.text, c.kind, c.path).citation for c in chunks}


async def converse(app: App, lines: Sequence[Line], known: set[str]) -> list[Result]:
    """Every line in order through the dispatcher, as the console sends it."""
    shown: list[Button] = []
    results = []
    for line in tqdm(lines, unit="msg", file=sys.stderr, leave=False):
        incoming = to_incoming(line.message, user=USER, pressable=shown)
        responder = CollectingResponder()
        try:
            await app.dispatcher.dispatch(incoming, responder)
        except NotStored as exc:
            responder.texts.append(f"(not stored: {exc})")
        shown[:] = responder.shown  # pressed or passed by, earlier buttons are gone
        if line.expected != NOT_GRADED:
            outcome = grade(line, responder.texts, known)
            results.append(Result(line, outcome, summary(responder.texts, known)))
    return results


async def with_app(
    args: argparse.Namespace,
    lines: Sequence[Line],
    use: Callable[[App, set[str]], Awaitable[T]],
    *,
    docs: Path | None = None,
) -> T:
    """``use`` the app, built on a temporary database with the docs ingested (``args.docs``
    unless ``docs`` is given)."""
    with tempfile.TemporaryDirectory(prefix="switchboard-support-") as tmp:
        config = settings(
            Path(tmp),
            models_dir=args.models_dir,
            device=args.device,
            temperature=args.temperature,
            embedding_model=args.embedding_model,
        )
        await asyncio.to_thread(upgrade, config.db_url)
        app = build_app(config)
        try:
            assert app.services.kb is not None, "the knowledge base needs the embeddings"
            ingested = await ingest_paths(app.services.kb, app.sessions, [docs or args.docs])
            failed = [r for r in ingested if r.status == "failed"]
            if failed:
                raise SystemExit(f"ingest failed: {failed[0].path}: {failed[0].error}")
            known = await known_citations(app)
            check_expected(lines, known)
            return await use(app, known)
        finally:
            await app.close()


async def run(args: argparse.Namespace) -> list[Result]:
    lines = read_lines(args.conversations)
    return await with_app(args, lines, lambda app, known: converse(app, lines, known))


# --- calibration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Searched:
    """A dev question and what the search found: (kind, citation, confidence, confident)."""

    line: Line
    hits: list[tuple[str, str, float, bool]]


def calibration_lines(conversations: Path, questions: Path) -> list[Line]:
    """The dev set's standalone questions: a follow-up is only right in its conversation."""
    lines = [
        Line(line.run, COMMAND.sub("", line.message), line.expected)
        for line in read_lines(conversations)
        if line.expected not in (NOT_GRADED, "chat") and not is_follow_up(line.message)
    ]
    with questions.open(newline="", encoding="utf-8") as file:
        lines += [Line("dev", r["question"], r["expected"].strip()) for r in csv.DictReader(file)]
    return lines


async def search_all(app: App, lines: Sequence[Line]) -> list[Searched]:
    kb = app.services.kb
    assert kb is not None
    out = []
    for line in lines:
        async with unit_of_work(app.sessions) as session:
            hits = await kb.search(session, line.message, k=app.services.qa.top_k)
        found = [(h.source.kind, h.source.citation, h.confidence, h.confident) for h in hits]
        out.append(Searched(line, found))
    return out


async def search_set(args: argparse.Namespace, folder: Path) -> list[Searched]:
    """The calibration questions of one dev set, searched in its own knowledge base."""
    lines = calibration_lines(folder / "conversations.csv", folder / "dev_questions.csv")
    return await with_app(args, lines, lambda app, _: search_all(app, lines), docs=folder / "docs")


def outcome_at(searched: Searched, threshold: float) -> str:
    """What /ask's answer would be with ``threshold`` for passages: the best-ranked hit above
    its threshold is the one quoted."""
    used = [
        citation
        for kind, citation, confidence, confident in searched.hits
        if (confident if kind == "faq" else confidence >= threshold)
    ]
    if searched.line.expected == "unknown":
        return "unrelated quote" if used else "honest"
    if not used:
        return "refused"
    wanted = alternatives(searched.line.expected)
    return "correct" if any(matches(used[0], w) for w in wanted) else "wrong source"


def calibrate(searched: Sequence[Searched]) -> float:
    """The passage threshold that gets the most dev questions right (the lowest of a tie, as
    a quoted weak match shows its source), with the table around it."""
    grid = [round(0.01 * i, 2) for i in range(-20, 101)]
    counts = [Counter(outcome_at(s, t) for s in searched) for t in grid]
    right = [c["correct"] + c["honest"] for c in counts]
    best = right.index(max(right))
    unknown = sum(s.line.expected == "unknown" for s in searched)
    print(f"{len(searched)} dev questions, {unknown} unanswerable")
    print(f"{'threshold':>9}  right  correct  wrong  refused  honest  unrelated")
    for i in range(max(0, best - 20), min(len(grid), best + 21), 5):
        c = counts[i]
        print(
            f"{grid[i]:>9.2f}  {right[i]:>5}  {c['correct']:>7}  {c['wrong source']:>5}  "
            f"{c['refused']:>7}  {c['honest']:>6}  {c['unrelated quote']:>9}"
            + ("   <- best" if i == best else "")
        )
    return grid[best]


def report(results: Sequence[Result], *, verbose: bool) -> None:
    if verbose:
        for r in results:
            print(f"{r.line.run}  {r.outcome:<15} {r.line.message}")
            print(f"   expected {r.line.expected}\n   got      {r.got}")
        print()
    counts = Counter(r.outcome for r in results)
    groups = [
        ("answerable", ANSWERABLE),
        ("unanswerable", UNANSWERABLE),
        ("small talk", SMALL_TALK),
    ]
    print(f"{'messages':<14}{'n':>4}  outcomes")
    for name, outcomes in groups:
        total = sum(counts[o] for o in outcomes)
        parts = "  ".join(f"{o} {counts[o]}" for o in outcomes)
        print(f"{name:<14}{total:>4}  {parts}")
    good = counts["correct"] + counts["honest"] + counts["chat"]
    print(f"{'all graded':<14}{len(results):>4}  right {good} ({good / len(results):.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--verbose", action="store_true", help="every graded message")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="choose the passage answer threshold on the dev set instead (see above)",
    )
    parser.add_argument(
        "--dev-sets",
        type=Path,
        nargs="+",
        default=DEV_SETS,
        help="with --calibrate: folders holding docs/, conversations.csv and dev_questions.csv",
    )
    parser.add_argument("--docs", type=Path, default=DATA / "docs")
    parser.add_argument("--conversations", type=Path, default=DATA / "conversations.csv")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "var" / "models")
    parser.add_argument("--embedding-model", help="EMBEDDING_MODEL (default: the packaged MiniLM)")
    parser.add_argument("--device", default="auto", help="MODEL_DEVICE (default: auto)")
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="chat replies' temperature; 0 (default) for repeatable runs, the service uses 0.3",
    )
    args = parser.parse_args()
    # Everything is local: a missing model should fail at once, not after hub retries.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    if args.calibrate:
        searched = [
            one for folder in args.dev_sets for one in asyncio.run(search_set(args, folder))
        ]
        threshold = calibrate(searched)
        if args.verbose:
            for one in searched:
                outcome = outcome_at(one, threshold)
                if outcome not in ("correct", "honest"):
                    print(f"{outcome:<15} {one.line.message}\n   expected {one.line.expected}")
                    for _, citation, confidence, confident in one.hits:
                        print(f"   {confidence:+.3f} {'*' if confident else ' '} {citation}")
        print(f"PASSAGE_THRESHOLD = {threshold:.2f}")
        print(f"{time.perf_counter() - started:.0f} s")
        return
    results = asyncio.run(run(args))
    report(results, verbose=args.verbose)
    print(f"{time.perf_counter() - started:.0f} s, models and ingest included")


if __name__ == "__main__":
    main()
