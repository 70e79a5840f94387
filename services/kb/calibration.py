"""Choosing the FAQ answer threshold from training data alone.

A bot's training phrasings hold no out-of-scope examples, so some intents are held out to play
out-of-scope, and some rows of the others to play in-scope questions; the threshold that
maximises (in-scope accuracy + out-of-scope recall) / 2, averaged over the folds, is kept. One
threshold serves every bot, as one product serves every knowledge base.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from services.kb.retrieval import RetrievalConfig, Retriever

Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class Fold:
    """A knowledge base of labelled phrasings and queries; a query's truth None: out-of-scope."""

    kb_texts: list[str]
    kb_labels: list[str]
    texts: list[str]
    truth: list[str | None]


def pseudo_folds(
    labels: Sequence[str], *, rng: np.random.Generator, repeats: int = 6
) -> Iterator[tuple[Mask, Mask, Mask]]:
    """(knowledge-base rows, query rows, out-of-scope rows) masks: a quarter of the intents is
    held out as out-of-scope, a fifth of each other intent's rows (of three or more) as queries."""
    array = np.array(labels)
    intents = sorted(set(labels))
    for _ in range(repeats):
        held = set(rng.permutation(intents)[: len(intents) // 4])
        query = np.isin(array, list(held))
        oos = query.copy()
        for intent in intents:
            rows = np.flatnonzero(array == intent)
            if intent not in held and len(rows) >= 3:
                query[rng.choice(rows, max(1, len(rows) // 5), replace=False)] = True
        yield ~query, query, oos


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
    scored = [(answers(f, kb, q, config=config), f.truth) for f, kb, q in folds]
    scores = np.concatenate([[s for _, s in results] for results, _ in scored])
    candidates = np.unique(np.quantile(scores, np.linspace(0, 1, 201)))
    values = [
        float(np.mean([balanced_accuracy(r, t, float(c)) for r, t in scored])) for c in candidates
    ]
    best = int(np.argmax(values))
    return float(candidates[best]), values[best]
