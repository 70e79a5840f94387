"""Choosing the FAQ answer threshold from training phrasings alone."""

from __future__ import annotations

import random

import numpy as np

from services.kb.calibration import (
    Fold,
    balanced_accuracy,
    chat_typed,
    choose_threshold,
    near_duplicate_groups,
    pseudo_folds,
    typed_in_chat,
)
from services.kb.retrieval import Retriever


def test_pseudo_folds_hold_out_whole_intents_as_out_of_scope() -> None:
    labels = [f"intent{i // 5}" for i in range(40)]  # 8 intents of 5 rows
    for kb, query, oos in pseudo_folds(labels, rng=np.random.default_rng(0), repeats=3):
        held = {labels[i] for i in np.flatnonzero(oos)}
        assert len(held) == 2
        assert not any(labels[i] in held for i in np.flatnonzero(kb))
        assert (kb ^ query).all() and not (oos & ~query).any()
        assert (query & ~oos).sum() == 6  # one row of each of the six other intents


def test_near_duplicates_of_one_intent_share_a_group() -> None:
    basis = np.eye(4, dtype=np.float32)
    twin = 0.95 * basis[0] + 0.31 * basis[1]
    twin /= np.linalg.norm(twin)
    vectors = np.vstack([basis[0], twin, basis[2], basis[0], basis[3]]).astype(np.float32)
    labels = ["a", "a", "a", "b", "a"]
    groups = near_duplicate_groups(vectors, labels, cutoff=0.9)
    assert groups[0] == groups[1]  # rewordings of one question
    assert len({groups[0], groups[2], groups[4]}) == 3
    assert groups[3] != groups[0]  # as close, but another intent's row


def test_grouped_folds_hold_out_a_row_with_its_rewordings() -> None:
    labels = [f"intent{i // 10}" for i in range(80)]  # 8 intents of 10 rows
    groups = np.array([i // 2 for i in range(80)])  # rows come in pairs of rewordings
    for kb, query, oos in pseudo_folds(
        labels, rng=np.random.default_rng(1), repeats=4, groups=groups
    ):
        inside = query & ~oos
        for group in np.unique(groups):
            members = groups == group
            assert inside[members].all() or not inside[members].any()
        assert inside.sum() == 12  # one pair of each of the six other intents
        assert (kb ^ query).all()


def test_chat_typing_drops_punctuation_and_now_and_then_a_word_or_letter() -> None:
    rng = random.Random(0)
    text = "Do you offer zero-percent EMI payment options for the orthopaedic mattress?"
    typed = [typed_in_chat(text, rng) for _ in range(50)]
    assert not any(c in t for t in typed for c in "?-")
    assert len(set(typed)) > 10  # rewritten differently each time
    words = set(text.replace("?", " ").replace("-", " ").split())
    kept = [len(set(t.split()) & words) / len(words) for t in typed]
    assert 0.6 < sum(kept) / len(kept) < 0.95  # mostly the same words
    fold = Fold(["a"], ["x"], ["Where is my order?", "Hi!"], ["x", None])
    assert chat_typed(fold).texts == chat_typed(fold).texts  # the same for a seed
    assert chat_typed(fold).truth == fold.truth and chat_typed(fold).kb_texts == fold.kb_texts


def test_balanced_accuracy_weighs_both_sides_equally() -> None:
    results = [("a", 0.9), ("b", 0.2), ("a", 0.8), ("a", 0.1)]
    truth = ["a", "b", None, None]
    # At 0.5: in-scope 1 of 2 right, out-of-scope 1 of 2 declined.
    assert balanced_accuracy(results, truth, 0.5) == 0.5
    assert balanced_accuracy(results, truth, 0.15) == 0.75


def test_the_threshold_falls_between_in_scope_and_out_of_scope() -> None:
    rng = np.random.default_rng(0)
    centres = np.linalg.qr(rng.normal(size=(16, 16)))[0][:4].astype(np.float32)

    def near(i: int, n: int) -> np.ndarray:
        rows = centres[i] + 0.15 * rng.normal(size=(n, 16)).astype(np.float32)
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)

    kb = np.vstack([near(0, 6), near(1, 6)])
    queries = np.vstack([near(0, 3), near(1, 3), near(2, 3), near(3, 3)])
    fold = Fold(
        kb_texts=[f"row {i}" for i in range(12)],
        kb_labels=["a"] * 6 + ["b"] * 6,
        texts=[f"query {i}" for i in range(12)],
        truth=["a"] * 3 + ["b"] * 3 + [None] * 6,
    )
    threshold, score = choose_threshold([(fold, kb, queries)])
    assert score == 1.0
    assert -0.5 < threshold < 0.5


def test_a_question_between_two_answers_is_less_confident_than_a_clear_one() -> None:
    basis = np.eye(8, dtype=np.float32)
    kb = np.vstack([basis[0], 0.9 * basis[0] + 0.1 * basis[2], basis[1], basis[1]])
    kb /= np.linalg.norm(kb, axis=1, keepdims=True)
    retriever = Retriever(kb, ["a", "a", "b", "b"], [0, 0, 1, 1])
    between = (basis[0] + basis[1]) / np.sqrt(2)
    clear = 0.8 * basis[0] + 0.6 * basis[3]  # as far from "a" as `between` is, but not near "b"
    (hit_between,), (hit_clear,) = retriever.search(
        np.vstack([between, clear]).astype(np.float32), ["q1", "q2"], k=1
    )
    assert hit_clear.group == 0
    assert abs(hit_clear.similarity - hit_between.similarity) < 0.1
    assert hit_clear.faq_confidence > hit_between.faq_confidence + 0.2
    # A passage's confidence ignores the margin: neighbouring passages may match alike.
    assert abs(hit_clear.confidence - hit_between.confidence) < 0.1
