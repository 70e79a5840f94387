"""`switchboard catalog import`, `purchases import` and `eval recommend` (issue 7)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bot.argtypes import whole_number
from bot.settings import Settings

SHOWN_ERRORS = 50
PRODUCT_FORMAT = (
    "CSV with a header row (id,title,description,category,price,url; id and title required) or "
    'JSON lines with the same keys, e.g. {"id": "sku-1", "title": "Wireless mouse", '
    '"category": "Computers", "price": 19.9}. A known id is updated. Each product\'s text is '
    "embedded with the embeddings service (EMBEDDING_MODEL)."
)
PURCHASE_FORMAT = (
    "CSV with a header row (platform,user_id,product_id,time) or JSON lines with the same keys. "
    "platform and user_id name the chat user (e.g. telegram and their numeric id, slack and "
    "their member id); product_id is the catalog id; time is ISO 8601 (UTC when no zone is "
    "given) or Unix seconds. A purchase already stored is skipped."
)


# A batch of 0 rows would import nothing; 0 threads would make torch fail.
POSITIVE = whole_number("a positive whole number")


def add_parsers(commands: Any) -> None:
    """Add the `catalog`, `purchases` and `eval` commands to the CLI's subparsers."""
    catalog = commands.add_parser("catalog", help="product catalog for /buy and /recommend")
    catalog_actions = catalog.add_subparsers(
        dest="catalog_command", metavar="ACTION", required=True
    )
    products = catalog_actions.add_parser(
        "import", help="import products from a CSV or JSON-lines file", description=PRODUCT_FORMAT
    )
    products.add_argument("file", type=Path, metavar="FILE")
    products.add_argument("--batch-size", type=POSITIVE, default=256, help="rows embedded at once")
    products.add_argument("--no-progress", action="store_true", help="no progress bar")

    purchases = commands.add_parser("purchases", help="purchase histories for /recommend")
    purchase_actions = purchases.add_subparsers(
        dest="purchases_command", metavar="ACTION", required=True
    )
    bought = purchase_actions.add_parser(
        "import", help="import purchases from a CSV or JSON-lines file", description=PURCHASE_FORMAT
    )
    bought.add_argument("file", type=Path, metavar="FILE")
    bought.add_argument("--batch-size", type=POSITIVE, default=5000, help="rows written at once")
    bought.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("eval", help="measure a service on public data")
    eval_actions = evaluate.add_subparsers(dest="eval_command", metavar="SERVICE", required=True)
    recommend = eval_actions.add_parser(
        "recommend",
        help="the recommender and its baselines on Amazon Games and MovieLens 100K",
        description="DATA_DIR holds amazon-games-llmrank/ and ml-100k/. Weights are chosen on "
        "validation splits built from training histories; the report splits are scored once. "
        "Product-text embeddings are cached under DATA_DIR of the settings (var/cache).",
    )
    recommend.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    recommend.add_argument("--only", choices=("games", "ml-100k"), help="one dataset only")
    recommend.add_argument(
        "--threads", type=POSITIVE, default=1, help="torch threads for embedding (default 1)"
    )


def _bar(path: Path, *, disable: bool) -> Any:
    from tqdm import tqdm

    from services.recommend.importing import count_lines

    header = 0 if path.suffix.lower() in {".jsonl", ".ndjson", ".json"} else 1
    return tqdm(total=max(count_lines(path) - header, 0), unit=" rows", disable=disable)


def _summary(kind: str, report: Any, seconds: float) -> None:
    print(f"{report.imported} {kind} imported in {seconds:.0f} s", end="")
    if kind == "products":
        print(f" (embedding {report.embed_seconds:.0f} s)", end="")
    if report.already_stored:
        print(f", {report.already_stored} already stored", end="")
    print(f"; {len(report.errors)} bad rows" if report.errors else "")
    if report.unreadable:
        print(
            f"  warning: the embedding model cannot read {report.unreadable} of them (another"
            " script): they are recommended by purchases only, and /buy finds them by name."
            " A multilingual EMBEDDING_MODEL reads them; import again after setting it."
        )
    for error in report.errors[:SHOWN_ERRORS]:
        print(f"  {error}", file=sys.stderr)
    if len(report.errors) > SHOWN_ERRORS:
        print(f"  … and {len(report.errors) - SHOWN_ERRORS} more", file=sys.stderr)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    # Imported here so that `switchboard --help` stays quick.
    from services.recommend import importing
    from services.recommend.parsing import FileFormatError
    from storage.db import create_engine, session_factory

    if args.command == "eval":
        return await _evaluate(settings, args)
    if args.file.is_dir():
        print(f"switchboard: {args.file} is a folder, not a file", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"switchboard: no such file: {args.file}", file=sys.stderr)
        return 2
    engine = create_engine(settings.db_url)
    sessions = session_factory(engine)
    started = time.perf_counter()
    try:
        with _bar(args.file, disable=args.no_progress) as bar:
            if args.command == "catalog":
                from bot.model_services import build_embedder

                report = await importing.import_products(
                    args.file,
                    sessions=sessions,
                    embedder=build_embedder(settings),
                    batch_size=args.batch_size,
                    progress=bar.update,
                )
            else:
                report = await importing.import_purchases(
                    args.file, sessions=sessions, batch_size=args.batch_size, progress=bar.update
                )
    except FileFormatError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    finally:
        await engine.dispose()
    _summary(
        "products" if args.command == "catalog" else "purchases",
        report,
        time.perf_counter() - started,
    )
    return 0


def _missing_folder(data_dir: Path, folders: list[str]) -> str | None:
    """What is not there of DATA_DIR and its dataset folders, said in a line; None when all are."""
    for folder in [data_dir, *(data_dir / name for name in folders)]:
        if folder.is_file():
            return f"{folder} is a file, not a folder"
        if not folder.is_dir():
            return f"no such folder: {folder}"
    return None


async def _evaluate(settings: Settings, args: argparse.Namespace) -> int:
    from services.recommend import datasets

    every = {
        "games": (datasets.GAMES, datasets.load_games),
        "ml-100k": (datasets.MOVIELENS, datasets.load_movielens),
    }
    loaders = {key: loader for key, loader in every.items() if args.only in (None, key)}
    folders = [folder for folder, _ in loaders.values()]
    # Checked before torch and the embedder load, which take seconds.
    if problem := _missing_folder(args.data_dir, folders):
        print(
            f"switchboard: {problem} (DATA_DIR should hold {' and '.join(folders)})",
            file=sys.stderr,
        )
        return 2
    import torch

    from bot.model_services import build_embedder
    from services.recommend import evaluation

    torch.set_num_threads(args.threads)  # the machine is shared; embedding is cached anyway
    embedder = build_embedder(settings)
    cache = settings.data_dir / "cache" / "recommend"
    results: dict[str, list[evaluation.Result]] = {}
    started = time.perf_counter()
    for key, (folder, load) in loaders.items():
        try:
            dataset = load(args.data_dir / folder)
        except OSError as exc:  # a file missing or unreadable inside the dataset's folder
            # numpy's loadtxt says which file in the message and sets no filename
            reason = f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
            print(f"switchboard: cannot read {reason}", file=sys.stderr)
            return 2
        vectors = await evaluation.cached_embeddings(
            dataset.texts, embedder=embedder, cache_dir=cache, name=key
        )
        methods = evaluation.choose(
            dataset, vectors, progress=lambda line: print(line, file=sys.stderr)
        )
        results[dataset.name] = evaluation.report(dataset, vectors, methods)
    only = f" --only {args.only}" if args.only else ""
    seconds = time.perf_counter() - started
    print(f"\n`switchboard eval recommend {args.data_dir}{only}` ({seconds:.0f} s)\n")
    print(evaluation.markdown(results))
    print()
    print(evaluation.describe(results))
    return 0
