"""Hybrid retrieval with answer-group voting: what `/ask` and the QA evaluation both run.

A knowledge base often says one thing several ways: an FAQ lists many phrasings of a question
with the same answer. Rows that share an answer form a *group* (a passage is a group of one).
Three choices, each tuned on training splits only (bench/eval_qa.py), make retrieval better
than plain nearest-neighbour:

* prototype smoothing: a row of a group is pulled towards its group's mean, so one odd
  phrasing does not capture queries that belong elsewhere;
* hybrid scores: dense cosine plus a small share of BM25 (normalised by the query's best), so
  rare exact words (a product name, "PIN") count;
* voting: the nearest rows vote for their groups with softmax weights, so a group that many
  close rows agree on beats a single slightly closer outlier.

Whether to answer at all is a separate decision: ``confidence`` is the best plain cosine to a
row of the chosen group, minus half of how close that group's own rows usually are to each
other (a tight group demands a closer match than a loose one). An FAQ match also counts half
of its *margin*, how much closer the chosen answer is than the next best answer: a question
that sits between two answers is usually about neither (held-out training intents showed it,
services/kb/calibration.py). Passages do not: neighbouring passages of one document often
match about equally well, and that says nothing against them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from services.kb.index import DenseIndex, LexicalIndex, top_k

# How close rows of a group of one are assumed to be to their siblings: about the median of
# the multi-row groups of the training sets (banking77, HINT3).
TYPICAL_DEFAULT = 0.8
# Calibrated answer thresholds, for the plain MiniLM (the ``minilm-intents`` embedder ships its
# own). FAQ-style matches, on ``faq_confidence``: by cross-validation on the HINT3 train sets
# with held-out intents as out-of-scope and held-out rows, without their near-duplicates, as
# in-scope, as written and as typed in a chat (`python bench/eval_qa.py`, see
# services/kb/calibration.py). Passages, on ``confidence`` plus SENTENCE_WEIGHT times the best
# cosine between the question and one of the passage's sentences: on the support dev set
# (`python bench/support_check.py --calibrate`: a shop's documents with answerable and
# unanswerable questions). A passage on the right topic that does not hold the answer matches as
# a whole about as well as one that does; its best single sentence tells them apart.
FAQ_THRESHOLD = 0.305
PASSAGE_THRESHOLD = 0.37
SENTENCE_WEIGHT = 0.75
MARGIN_GROUPS = 5  # the margin of a group is over the best of the other top groups


@dataclass(frozen=True, slots=True)
class RetrievalConfig:
    """The knobs of `Retriever`; the defaults are the values tuned by bench/eval_qa.py."""

    neighbours: int = 10
    temperature: float = 0.03
    lexical_weight: float = 0.1
    prototype_weight: float = 0.5
    typical_weight: float = 0.5
    margin_weight: float = 0.5


@dataclass(frozen=True, slots=True)
class GroupHit:
    """A group (an FAQ answer, or a passage) ranked for one query."""

    group: int  # the caller's group label
    row: int  # the group's best row for this query
    vote: float  # share of the neighbours' weight, 0..1
    similarity: float  # best plain cosine between the query and a row of the group
    confidence: float  # similarity minus the group's typical tightness (see module doc)
    faq_confidence: float  # confidence plus a share of the margin over the next group


class Retriever:
    """Searches rows (vectors and texts) and ranks their groups for each query."""

    def __init__(
        self,
        vectors: NDArray[np.float32],
        texts: Sequence[str],
        groups: Sequence[int] | None = None,
        *,
        config: RetrievalConfig | None = None,
    ) -> None:
        self.config = config or RetrievalConfig()
        self.size = len(texts)
        labels = np.asarray(groups if groups is not None else np.arange(self.size))
        self._labels, self._group_of = np.unique(labels, return_inverse=True)
        self._group_of = self._group_of.astype(np.intp)
        order = np.argsort(self._group_of, kind="stable")
        sizes = np.bincount(self._group_of, minlength=len(self._labels))
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        self._members = [order[bounds[g] : bounds[g + 1]] for g in range(len(self._labels))]
        self.raw = DenseIndex(vectors)
        self.smoothed = self._smooth(sizes)
        self.typical = self._typicals(sizes)
        self.lexical = LexicalIndex(texts) if self.config.lexical_weight else None

    def __len__(self) -> int:
        return self.size

    def _smooth(self, sizes: NDArray[np.intp]) -> DenseIndex:
        weight = self.config.prototype_weight
        if not weight or self.size == 0 or sizes.max() < 2:
            return self.raw
        vectors = self.raw.vectors
        means = np.zeros((len(sizes), vectors.shape[1]), dtype=np.float32)
        np.add.at(means, self._group_of, vectors)
        means /= sizes[:, None]
        shared = (sizes[self._group_of] > 1)[:, None]
        smoothed = vectors + weight * means[self._group_of] * shared
        smoothed /= np.linalg.norm(smoothed, axis=1, keepdims=True) + 1e-12
        return DenseIndex(smoothed.astype(np.float32))

    def _typicals(self, sizes: NDArray[np.intp]) -> NDArray[np.float32]:
        typical = np.full(len(sizes), TYPICAL_DEFAULT, dtype=np.float32)
        for group in np.flatnonzero(sizes > 1):
            rows = self.raw.vectors[self._members[group]]
            similarity = rows @ rows.T
            np.fill_diagonal(similarity, -1.0)
            typical[group] = float(np.median(similarity.max(axis=1)))
        return typical

    def hybrid_scores(
        self, queries: NDArray[np.float32], texts: Sequence[str]
    ) -> NDArray[np.float32]:
        """Dense (smoothed) plus weighted BM25 scores of every row, one row per query."""
        scores = self.smoothed.scores(queries)
        if self.lexical is not None and self.size:
            for i, text in enumerate(texts):
                lexical = self.lexical.scores(text)
                best = float(lexical.max())
                if best > 0:
                    scores[i] += self.config.lexical_weight * lexical / best
        return scores

    def search(
        self, queries: NDArray[np.float32], texts: Sequence[str], *, k: int = 5
    ) -> list[list[GroupHit]]:
        """The ``k`` best groups for each query (rows of ``queries`` with their ``texts``)."""
        queries = np.atleast_2d(queries).astype(np.float32, copy=False)
        if self.size == 0:
            return [[] for _ in texts]
        scores = self.hybrid_scores(queries, texts)
        return [self._rank(queries[i], scores[i], k) for i in range(len(texts))]

    def _rank(
        self, query: NDArray[np.float32], scores: NDArray[np.float32], k: int
    ) -> list[GroupHit]:
        config = self.config
        # More rows than voters, so that groups the vote missed can still fill the k places.
        candidates = top_k(scores, max(config.neighbours, 5 * k))
        voters = candidates[: config.neighbours]
        weights = np.exp((scores[voters] - scores[voters[0]]) / config.temperature)
        votes: dict[int, float] = {}
        best_row: dict[int, int] = {}
        for position, row in enumerate(candidates):
            group = int(self._group_of[row])
            weight = float(weights[position]) if position < len(voters) else 0.0
            votes[group] = votes.get(group, 0.0) + weight
            best_row.setdefault(group, int(row))
        total = sum(votes.values()) or 1.0
        # A few groups beyond k, so that the margin does not depend on how many hits are asked.
        ranked = sorted(votes, key=lambda g: -votes[g])[: max(k, MARGIN_GROUPS)]  # stable
        similarities = [float((self.raw.vectors[self._members[g]] @ query).max()) for g in ranked]
        hits = []
        for position, group in enumerate(ranked[:k]):
            similarity = similarities[position]
            others = similarities[:position] + similarities[position + 1 :]
            margin = similarity - max(others, default=0.0)
            confidence = similarity - config.typical_weight * float(self.typical[group])
            hits.append(
                GroupHit(
                    group=int(self._labels[group]),
                    row=best_row[group],
                    vote=votes[group] / total,
                    similarity=similarity,
                    confidence=confidence,
                    faq_confidence=confidence + config.margin_weight * margin,
                )
            )
        return hits
