"""`kb add` over files and folders: one transaction per file, a progress bar for many files."""

from __future__ import annotations

import asyncio
import csv
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from pypdf.errors import PyPdfError
from tqdm import tqdm

from services.kb.knowledge import IngestResult, KnowledgeBase
from services.kb.loaders import FORMATS, is_supported
from storage.db import SessionFactory, unit_of_work

log = logging.getLogger(__name__)

# Below this many files a progress bar is noise.
PROGRESS_FROM = 5
# What parsers raise on a malformed file when its loader did not turn that into
# UnsupportedDocument (html.parser asserts, for one): that file fails, the others go in.
# Database errors are none of these and stop the run.
PARSE_ERRORS = (ValueError, LookupError, AssertionError, csv.Error, PyPdfError)
NO_FILES = f"no supported files found here ({', '.join(sorted(FORMATS))}; hidden ones are skipped)"


def expand(paths: Sequence[Path]) -> Iterator[Path]:
    """Files named, and the supported files under folders named (hidden ones skipped)."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in child.relative_to(path).parts)
                if child.is_file() and not hidden and is_supported(child):
                    yield child
        else:
            yield path


async def ingest_paths(
    kb: KnowledgeBase,
    sessions: SessionFactory,
    paths: Sequence[Path],
    *,
    progress: bool | None = None,
) -> list[IngestResult]:
    """Ingest every file; a file that fails is reported and the others still go in. So is a
    folder with no supported file in it: a wrong path, most likely."""
    found = [(path, list(expand([path]))) for path in paths]
    files = [file for _, group in found for file in group]
    show = progress if progress is not None else len(files) >= PROGRESS_FROM
    results = []
    with tqdm(total=len(files), unit="file", disable=not show, file=sys.stderr) as bar:
        for named, group in found:
            if not group:
                key = str(await asyncio.to_thread(named.resolve))
                results.append(IngestResult(key, "failed", error=NO_FILES))
            for path in group:
                bar.set_postfix_str(path.name[-40:], refresh=False)
                results.append(await _ingest(kb, sessions, path))
                bar.update()
    return results


async def _ingest(kb: KnowledgeBase, sessions: SessionFactory, path: Path) -> IngestResult:
    try:
        # A commit per file: an interrupted big ingest keeps what it finished.
        async with unit_of_work(sessions) as session:
            return await kb.add(session, path)
    except PARSE_ERRORS as exc:
        lines = str(exc).strip().splitlines()
        reason = lines[0][:200] if lines else type(exc).__name__
        log.warning("%s: could not parse it (%s): %s", path, type(exc).__name__, reason)
        key = str(await asyncio.to_thread(path.resolve))
        return IngestResult(key, "failed", error=f"could not parse it: {reason}")
