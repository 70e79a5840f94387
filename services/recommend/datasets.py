"""The two public evaluation sets, read into train histories and ranking tasks.

Both build a *validation* split from training histories only (weights and parameters are chosen
there) and a *report* split (the figure we publish), as ``shared/EVALUATION.md`` prescribes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.recommend.signals import Histories, IntArray
from services.recommend.tuning import RankingTasks

GAMES = "amazon-games-llmrank"
MOVIELENS = "ml-100k"
NEGATIVES = 99  # MovieLens: unseen products ranked against each held-out one
VALIDATION_SEED = 7
REPORT_SEED = 2024


@dataclass(frozen=True, slots=True)
class Split:
    train: Histories
    tasks: RankingTasks


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    texts: list[str]  # product text by item index, what gets embedded
    validation: Split
    report: Split


def _tasks(
    histories: list[IntArray], candidates: list[list[int]], targets: list[int]
) -> RankingTasks:
    width = max(len(c) for c in candidates)
    table = np.full((len(candidates), width), -1, dtype=np.int64)
    for row, items in enumerate(candidates):
        table[row, : len(items)] = items
    position = np.array([c.index(t) for c, t in zip(candidates, targets, strict=True)])
    return RankingTasks(histories, table, position.astype(np.int64))


def load_games(folder: Path) -> Dataset:
    """LLMRank "Games-6k": rank the held-out item among 20 random candidates plus itself.

    Report: users with an even id, full history, held-out item. Validation: users with an odd
    id, history minus its newest item, which becomes the target; the model then trains on every
    user's history minus its newest item, so no validation target is ever seen in training.
    """
    titles: dict[int, str] = {}
    with (folder / "Games-6k.item.tsv").open(encoding="utf-8") as file:
        next(file)
        for line in file:
            item, _, title = line.rstrip("\n").partition("\t")
            titles[int(item)] = title
    history: dict[int, list[int]] = {}
    held_out: dict[int, int] = {}
    with (folder / "Games-6k.test.inter.tsv").open(encoding="utf-8") as file:
        next(file)
        for line in file:
            user, items, target = line.rstrip("\n").split("\t")
            history[int(user)] = [int(i) for i in items.split()]
            held_out[int(user)] = int(target)
    random20: dict[int, list[int]] = {}
    with (folder / "Games-6k.random20.tsv").open(encoding="utf-8") as file:
        for line in file:
            user, *candidates = line.split()
            random20[int(user)] = [int(i) for i in candidates]
    n_items = max(titles) + 1
    texts = [titles.get(i, "") for i in range(n_items)]

    def split(parity: int, *, validation: bool) -> Split:
        users = sorted(u for u in random20 if u % 2 == parity)
        if validation:
            train = Histories.of([h[:-1] for h in history.values()])
            pairs = [(history[u][:-1], history[u][-1]) for u in users]
        else:
            train = Histories.of(list(history.values()))
            pairs = [(history[u], held_out[u]) for u in users]
        # The target joins its 20 random candidates (LLMRank's has_gt); a duplicate is dropped.
        candidates = [
            list(dict.fromkeys([*random20[u], t])) for u, (_, t) in zip(users, pairs, strict=True)
        ]
        return Split(
            train,
            _tasks(
                [np.array(h, dtype=np.int64) for h, _ in pairs], candidates, [t for _, t in pairs]
            ),
        )

    return Dataset("Amazon Games", texts, split(1, validation=True), split(0, validation=False))


def _ratings(path: Path) -> np.ndarray:
    return np.loadtxt(path, dtype=np.int64, ndmin=2)


def load_movielens(folder: Path) -> Dataset:
    """MovieLens 100K: train on ua.base; rank each ua.test item against 99 unseen items.

    Validation: from each user's ua.base ratings, 10 random ones (at most half) are held out
    and ranked the same way by a model trained on the rest; ua.test is never read for it.
    """
    genres = [line.split("|")[0] for line in (folder / "u.genre").read_text().splitlines() if line]
    texts: list[str] = []
    with (folder / "u.item").open(encoding="latin-1") as file:
        for line in file:
            parts = line.rstrip("\n").split("|")
            kinds = ", ".join(
                g for g, flag in zip(genres, parts[5:24], strict=False) if flag == "1"
            )
            texts.append(f"{parts[1]}. {kinds}")
    n_items = len(texts)
    base = _ratings(folder / "ua.base")
    test = _ratings(folder / "ua.test")

    rng = np.random.default_rng(VALIDATION_SEED)
    kept, held = [], []
    for rows in _by_user(base):
        order = rng.permutation(len(rows))
        k = min(10, len(rows) // 2)
        held.append(rows[order[:k]])
        kept.append(rows[order[k:]])
    validation = _movielens_split(
        np.concatenate(kept), np.concatenate(held), base, n_items, seed=VALIDATION_SEED
    )
    report = _movielens_split(base, test, np.concatenate([base, test]), n_items, seed=REPORT_SEED)
    return Dataset("MovieLens 100K", texts, validation, report)


def _by_user(ratings: np.ndarray) -> list[np.ndarray]:
    ratings = ratings[np.argsort(ratings[:, 0], kind="stable")]
    bounds = np.flatnonzero(np.diff(ratings[:, 0])) + 1
    return np.split(ratings, bounds)


def _movielens_split(
    train: np.ndarray, held: np.ndarray, known: np.ndarray, n_items: int, *, seed: int
) -> Split:
    """Items are 1-based in the files and 0-based here; histories are ordered by time."""
    sequences: dict[int, IntArray] = {}
    for rows in _by_user(train):
        rows = rows[np.lexsort((rows[:, 1], rows[:, 3]))]
        sequences[int(rows[0, 0])] = rows[:, 1] - 1
    seen: dict[int, set[int]] = {}
    for user, item in known[:, :2]:
        seen.setdefault(int(user), set()).add(int(item) - 1)
    rng = np.random.default_rng(seed)
    histories, candidates, targets = [], [], []
    everything = np.arange(n_items)
    for user, item in held[np.lexsort((held[:, 1], held[:, 0]))][:, :2]:
        unseen = np.setdiff1d(everything, np.fromiter(seen[int(user)], dtype=np.int64))
        negatives = rng.choice(unseen, NEGATIVES, replace=False)
        histories.append(sequences[int(user)])
        candidates.append([int(item) - 1, *negatives.tolist()])
        targets.append(int(item) - 1)
    users = sorted(sequences)
    return Split(
        Histories.of([sequences[u] for u in users]), _tasks(histories, candidates, targets)
    )
