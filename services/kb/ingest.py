"""`kb add` over files and folders: one transaction per file, a progress bar for many files."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from tqdm import tqdm

from services.kb.knowledge import IngestResult, KnowledgeBase
from services.kb.loaders import is_supported
from storage.db import SessionFactory, unit_of_work

# Below this many files a progress bar is noise.
PROGRESS_FROM = 5


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
    """Ingest every file; a file that fails is reported and the others still go in."""
    files = list(expand(paths))
    show = progress if progress is not None else len(files) >= PROGRESS_FROM
    results = []
    with tqdm(total=len(files), unit="file", disable=not show, file=sys.stderr) as bar:
        for path in files:
            bar.set_postfix_str(path.name[-40:], refresh=False)
            # A commit per file: an interrupted big ingest keeps what it finished.
            async with unit_of_work(sessions) as session:
                results.append(await kb.add(session, path))
            bar.update()
    return results
