"""Item statistics learned from purchase histories: co-occurrence, popularity and trend.

Every function is pure numpy / scipy over :class:`Histories`, so the same code serves the chat
index and the offline evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Histories:
    """Every user's purchases as item indices, oldest first, packed CSR-style."""

    indptr: IntArray
    items: IntArray

    @classmethod
    def of(cls, sequences: Sequence[Sequence[int] | NDArray[np.int64]]) -> Histories:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        indptr = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = (
            np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
            if len(sequences) and indptr[-1]
            else np.zeros(0, dtype=np.int64)
        )
        return cls(indptr, items)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def user_of_position(self) -> IntArray:
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.indptr))

    def position_from_end(self) -> IntArray:
        """0 for each user's newest purchase, 1 for the one before, and so on."""
        return np.repeat(self.indptr[1:], np.diff(self.indptr)) - 1 - np.arange(len(self.items))


def counts(histories: Histories, n_items: int) -> FloatArray:
    return np.bincount(histories.items, minlength=n_items).astype(np.float32)


def trend(histories: Histories, n_items: int, *, decay: float) -> FloatArray:
    """Popularity among recent purchases: each user's newest purchase counts 1, the one before
    ``decay``, and so on. Without timestamps the end of a history is the best clock we have, and
    newer products sell more than old ones with the same all-time count."""
    weights = decay ** histories.position_from_end().astype(np.float64)
    return np.bincount(histories.items, weights=weights, minlength=n_items).astype(np.float32)


def cooccurrence(
    histories: Histories, n_items: int, *, window: int, decay: float, backward: float
) -> sp.csr_matrix:
    """Item-to-item co-occurrence counts.

    With ``window`` > 0 the order matters: a purchase followed ``d`` purchases later by another
    counts ``decay**(d-1)`` from the first to the second and ``backward`` times that the other
    way, so "bought next" outweighs "bought long before". ``window`` = 0 counts every pair of a
    history once, unordered (the classic item-kNN statistic, for data whose order is noise).
    """
    if window <= 0:
        return _all_pairs(histories, n_items)
    users = histories.user_of_position()
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    vals: list[NDArray[np.float32]] = []
    for distance in range(1, window + 1):
        same = users[:-distance] == users[distance:]
        first, then = histories.items[:-distance][same], histories.items[distance:][same]
        keep = first != then
        first, then = first[keep], then[keep]
        weight = np.float32(decay ** (distance - 1))
        rows += [first, then]
        cols += [then, first]
        vals += [np.full(len(first), weight), np.full(len(first), weight * np.float32(backward))]
        if not same.any():
            break
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    matrix = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, n_items),
    )
    return matrix.tocsr()  # sums the duplicates


def _all_pairs(histories: Histories, n_items: int) -> sp.csr_matrix:
    users = histories.user_of_position()
    bought = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, histories.items)),
        shape=(len(histories), n_items),
    )
    bought.data[:] = 1.0  # a repeat purchase says nothing new about taste
    matrix = (bought.T @ bought).tocsr()
    matrix.setdiag(0)
    matrix.eliminate_zeros()
    return matrix


def normalise(matrix: sp.csr_matrix, item_counts: FloatArray, *, power: float) -> sp.csr_matrix:
    """Divide each pair by (count_i * count_j) ** power: 0.5 is the cosine, which keeps
    best-sellers from co-occurring with everything."""
    scale = np.maximum(item_counts, 1.0) ** -power
    return (sp.diags(scale) @ matrix @ sp.diags(scale)).tocsr().astype(np.float32)


def prune_rows(matrix: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Keep each item's ``keep`` strongest neighbours: less noise, and bounded work per query."""
    if keep <= 0:
        return matrix
    matrix = matrix.tocsr()
    lengths = np.diff(matrix.indptr)
    if lengths.max(initial=0) <= keep:
        return matrix
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)
    order = np.lexsort((-matrix.data, rows))
    rank = np.arange(len(order)) - np.repeat(matrix.indptr[:-1], lengths)
    chosen = order[rank < keep]
    pruned = sp.csr_matrix(
        (matrix.data[chosen], (rows[chosen], matrix.indices[chosen])), shape=matrix.shape
    )
    pruned.sort_indices()
    return pruned
