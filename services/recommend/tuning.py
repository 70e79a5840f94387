"""Ranking metrics and the choice of blend weights on a validation split.

A task is one history with its candidate products, one of which (``target``) is the product the
user really bought next. Ties count against the target: a model that scores everything equally
gets no credit for luck.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from services.recommend.model import FEATURES, Weights

FloatArray = NDArray[np.float32]
IntArray = NDArray[np.int64]
TIE_BREAK = 1e-3  # popularity weight that only orders otherwise equal scores


@dataclass(frozen=True, slots=True)
class Metrics:
    ndcg10: float
    hr1: float
    hr10: float
    users: int


@dataclass(frozen=True, slots=True)
class RankingTasks:
    """Candidates per task (padded with -1) and the position of each task's target."""

    histories: list[IntArray]
    candidates: IntArray
    target: IntArray

    def __len__(self) -> int:
        return len(self.histories)


def target_ranks(scores: FloatArray, candidates: IntArray, target: IntArray) -> IntArray:
    valid = candidates >= 0
    scores = np.where(valid, scores, -np.inf)
    own = scores[np.arange(len(scores)), target][:, None]
    ahead: IntArray = ((scores > own).sum(axis=1) + (scores == own).sum(axis=1) - 1).astype(
        np.int64
    )
    return ahead


def metrics(scores: FloatArray, tasks: RankingTasks) -> Metrics:
    ranks = target_ranks(scores, tasks.candidates, tasks.target)
    gains = np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0)
    return Metrics(
        ndcg10=float(gains.mean()),
        hr1=float((ranks < 1).mean()),
        hr10=float((ranks < 10).mean()),
        users=len(ranks),
    )


def blend(features: FloatArray, weights: Weights) -> FloatArray:
    return features @ weights.array()


def ndcg10(features: FloatArray, tasks: RankingTasks, weights: NDArray[np.float64]) -> float:
    ranks = target_ranks(features @ weights.astype(np.float32), tasks.candidates, tasks.target)
    return float(np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0).mean())


def fit_weights(
    features: FloatArray,
    tasks: RankingTasks,
    *,
    active: Sequence[str] = FEATURES,
    start: Weights | None = None,
    rounds: int = 6,
) -> tuple[Weights, float]:
    """Coordinate ascent on NDCG@10: nudge one weight at a time by shrinking steps and keep
    each change that helps. ``cooc`` (or the first active feature) stays fixed at 1, because
    only the ratios matter. Weights outside ``active`` stay 0."""
    index = [FEATURES.index(name) for name in active]
    weights = np.zeros(len(FEATURES))
    if start is not None:
        weights[index] = start.array()[index]
    else:
        weights[index] = 0.5
    anchor = index[0]
    weights[anchor] = 1.0
    best = ndcg10(features, tasks, weights)
    for step in (1.0, 0.5, 0.25, 0.1, 0.05)[: max(1, rounds)]:
        improved = True
        while improved:
            improved = False
            for k in index:
                if k == anchor:
                    continue
                for sign in (1.0, -1.0):
                    trial = weights.copy()
                    trial[k] += sign * step * max(abs(weights[k]), 0.2)
                    value = ndcg10(features, tasks, trial)
                    if value > best + 1e-6:
                        best, weights, improved = value, trial, True
    return Weights.of(list(weights)), best


def with_tie_break(weights: Weights) -> Weights:
    values = weights.array().astype(np.float64)
    values[FEATURES.index("popularity")] += TIE_BREAK
    return Weights.of(list(values))
