"""Choosing the FAQ answer threshold from training data alone.

A bot's training phrasings hold no out-of-scope examples, so some intents are held out to play
out-of-scope, and some rows of the others to play in-scope questions; the threshold that
maximises (in-scope accuracy + out-of-scope recall) / 2, averaged over the folds, is kept. One
threshold serves every bot, as one product serves every knowledge base.

Curated phrasings make easy questions in two ways, and both make the threshold too strict for
the messages a bot really gets. FAQ rows are often small variations of each other, so an
in-scope query is held out together with its near-duplicates (`near_duplicate_groups`). And
people type in a hurry, so every fold is scored twice: as written and as typed in a chat
(`chat_typed`: no punctuation, a word left out or a letter wrong now and then).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from services.kb.retrieval import RetrievalConfig, Retriever

Mask = NDArray[np.bool_]
# Cosine (plain MiniLM) above which two phrasings of an intent count as rewordings of each other.
NEAR_DUPLICATE = 0.9


@dataclass(frozen=True)
class Fold:
    """A knowledge base of labelled phrasings and queries; a query's truth None: out-of-scope."""

    kb_texts: list[str]
    kb_labels: list[str]
    texts: list[str]
    truth: list[str | None]


def near_duplicate_groups(
    vectors: NDArray[np.float32], labels: Sequence[str], *, cutoff: float = NEAR_DUPLICATE
) -> NDArray[np.intp]:
    """A group number per row: rows of one intent whose cosine exceeds ``cutoff`` share a group,
    transitively. ``vectors`` must come from a model that has not been trained on these rows."""
    parent = np.arange(len(labels))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    array = np.array(labels)
    for intent in set(labels):
        rows = np.flatnonzero(array == intent)
        similar = vectors[rows] @ vectors[rows].T
        for a, b in zip(*np.nonzero(np.triu(similar > cutoff, k=1)), strict=True):
            parent[root(int(rows[a]))] = root(int(rows[b]))
    return np.array([root(i) for i in range(len(labels))], dtype=np.intp)


def pseudo_folds(
    labels: Sequence[str],
    *,
    rng: np.random.Generator,
    repeats: int = 6,
    groups: NDArray[np.intp] | None = None,
) -> Iterator[tuple[Mask, Mask, Mask]]:
    """(knowledge-base rows, query rows, out-of-scope rows) masks: a quarter of the intents is
    held out as out-of-scope, about a fifth of each other intent's rows (of three or more) as
    queries. With ``groups`` (`near_duplicate_groups`), query rows are held out a whole group at a
    time, so that no query has a rewording of itself in the knowledge base: FAQ phrasings are
    often written as small variations of each other, and a query that matches its own variation
    makes the threshold stricter than real questions warrant."""
    array = np.array(labels)
    group_of = np.arange(len(labels)) if groups is None else np.asarray(groups)
    intents = sorted(set(labels))
    for _ in range(repeats):
        held = set(rng.permutation(intents)[: len(intents) // 4])
        query = np.isin(array, list(held))
        oos = query.copy()
        for intent in intents:
            rows = np.flatnonzero(array == intent)
            if intent in held or len(rows) < 3:
                continue
            wanted, taken = max(1, len(rows) // 5), 0
            for group in rng.permutation(np.unique(group_of[rows])):
                if taken >= wanted:
                    break
                members = rows[group_of[rows] == group]
                if len(rows) - taken - len(members) < 2:
                    continue
                query[members] = True
                taken += len(members)
        yield ~query, query, oos


def typed_in_chat(text: str, rng: random.Random) -> str:
    """``text`` as people type it in a chat: no punctuation, now and then a word left out or a
    letter swapped, lost or doubled."""
    words = "".join(c if c.isalnum() or c.isspace() else " " for c in text).split()
    kept = [w for w in words if len(words) < 3 or rng.random() >= 0.1] or words
    return " ".join(_typo(w, rng) if len(w) > 3 and rng.random() < 0.15 else w for w in kept)


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    return word[:i] + word[i + 1 :] if kind == 1 else word[:i] + word[i] + word[i:]


def chat_typed(fold: Fold, *, seed: int = 0) -> Fold:
    """``fold`` with each query rewritten by `typed_in_chat`."""
    rng = random.Random(seed)
    return replace(fold, texts=[typed_in_chat(text, rng) for text in fold.texts])


def answers(
    fold: Fold,
    kb: NDArray[np.float32],
    queries: NDArray[np.float32],
    *,
    config: RetrievalConfig | None = None,
) -> list[tuple[str, float]]:
    """For each query of ``fold``: the FAQ answer (label) the product would pick, and its
    confidence."""
    names = sorted(set(fold.kb_labels))
    groups = [names.index(label) for label in fold.kb_labels]
    hits = Retriever(kb, fold.kb_texts, groups, config=config).search(queries, fold.texts, k=1)
    return [(names[row[0].group], row[0].faq_confidence) for row in hits]


def balanced_accuracy(
    results: Sequence[tuple[str, float]], truth: Sequence[str | None], threshold: float
) -> float:
    inside, recall = [], []
    for (label, score), true in zip(results, truth, strict=True):
        answered = score >= threshold
        if true is None:
            recall.append(not answered)
        else:
            inside.append(answered and label == true)
    return (float(np.mean(inside)) + float(np.mean(recall))) / 2


def choose_threshold(
    folds: Sequence[tuple[Fold, NDArray[np.float32], NDArray[np.float32]]],
    *,
    config: RetrievalConfig | None = None,
) -> tuple[float, float]:
    """The threshold with the best mean balanced accuracy over ``folds`` (each with its KB and
    query vectors), and that accuracy."""
    return best_threshold([(answers(f, kb, q, config=config), f.truth) for f, kb, q in folds])


def best_threshold(
    scored: Sequence[tuple[Sequence[tuple[str, float]], Sequence[str | None]]],
) -> tuple[float, float]:
    """Over folds scored by some method (each: its (answer, confidence) results and its
    truth), the threshold with the best mean balanced accuracy, and that accuracy."""
    scores = np.concatenate([[s for _, s in results] for results, _ in scored])
    candidates = np.unique(np.quantile(scores, np.linspace(0, 1, 201)))
    values = [
        float(np.mean([balanced_accuracy(r, t, float(c)) for r, t in scored])) for c in candidates
    ]
    best = int(np.argmax(values))
    return float(candidates[best]), values[best]
