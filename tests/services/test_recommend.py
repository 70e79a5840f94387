"""The hybrid recommender on tiny hand-made data where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from services.recommend import signals
from services.recommend.content import ContentIndex
from services.recommend.index import CatalogIndex, decode_embeddings
from services.recommend.model import FEATURES, HybridModel, Params, Weights
from services.recommend.rerank import parse
from services.recommend.service import DEFAULT_PARAMS, DEFAULT_WEIGHTS
from services.recommend.signals import Histories
from services.recommend.tuning import RankingTasks, fit_weights, metrics, target_ranks
from tests.fakes.embedder import FakeEmbedder

TITLES = [
    "Game console",  # 0
    "Console controller",  # 1
    "Console racing game",  # 2
    "Cookbook volume one",  # 3
    "Cookbook volume two",  # 4
    "Garden hose",  # 5
    "Garden hose nozzle",  # 6 (never bought: a new product)
    "Desk lamp",  # 7 (never bought either)
]


def embeddings(titles: list[str] = TITLES) -> np.ndarray:
    fake = FakeEmbedder()
    return np.stack([fake.vector(t) for t in titles])


def index_of(histories: list[list[int]]) -> CatalogIndex:
    model = HybridModel.fit(Histories.of(histories), embeddings(), params=DEFAULT_PARAMS)
    return CatalogIndex(np.arange(len(TITLES), dtype=np.int64), TITLES, model)


def shop_histories() -> list[list[int]]:
    # Console buyers go on to the controller, then the game; cookbook one leads to two.
    return [[0, 1, 2]] * 6 + [[3, 4]] * 4 + [[5]] * 2 + [[0, 1]] * 2


def ranked(index: CatalogIndex, history: list[int], n: int = 8) -> list[int]:
    picks = index.recommend(np.array(history), n, weights=DEFAULT_WEIGHTS)
    return [p.position for p in picks]


def test_bought_together_comes_first_with_the_reason() -> None:
    index = index_of(shop_histories())
    picks = index.recommend(np.array([0]), 3, weights=DEFAULT_WEIGHTS)
    # What console buyers bought next, before anything unrelated; the console explains both.
    assert {p.position for p in picks[:2]} == {1, 2}
    assert {p.reason for p in picks[:2]} == {"because you bought Game console"}
    assert picks[2].reason.startswith("popular")


def test_recent_purchases_weigh_more() -> None:
    # Two equally strong pairs: console -> controller and cookbook one -> cookbook two.
    index = index_of([[0, 1]] * 4 + [[3, 4]] * 4)
    assert ranked(index, [3, 0])[0] == 1  # the console is the newer purchase
    assert ranked(index, [0, 3])[0] == 4


def test_what_comes_next_beats_what_came_before() -> None:
    # 5 users bought A then B; 5 others bought C then A. After A, B is the better guess.
    titles = ["A", "B", "C"]
    model = HybridModel.fit(
        Histories.of([[0, 1]] * 5 + [[2, 0]] * 5), embeddings(titles), params=Params()
    )
    index = CatalogIndex(np.arange(3, dtype=np.int64), titles, model)
    assert ranked(index, [0]) == [1, 2]


def test_never_recommends_what_was_bought() -> None:
    index = index_of(shop_histories())
    for history in ([0], [0, 1], [3, 4, 5], [0, 1, 2, 3]):
        assert not set(ranked(index, history)) & set(history)
    assert index.recommend(np.arange(len(TITLES)), 5, weights=DEFAULT_WEIGHTS) == []


def test_a_new_product_is_found_by_its_content() -> None:
    index = index_of(shop_histories())
    weights = Weights(cooc=1, hop2=1, content=1, content_max=1, popularity=0.1)
    picks = index.recommend(np.array([5]), 8, weights=weights)
    positions = [p.position for p in picks]
    # Nobody bought the nozzle, but it reads like the hose; the lamp resembles nothing.
    assert positions.index(6) < positions.index(7)
    assert picks[positions.index(6)].reason == "similar to Garden hose, which you bought"


def test_popular_ranks_by_purchases() -> None:
    index = index_of(shop_histories())
    picks = index.popular(3, exclude=np.zeros(0, dtype=np.int64))
    # Console and controller sold 8 each; the controller sold later in the histories.
    assert [p.position for p in picks] == [1, 0, 2]
    assert picks[0].reason == "popular: bought 8 times"
    never = index.popular(8, exclude=np.zeros(0, dtype=np.int64))[-1]
    assert never.reason == "new in the catalog"


def test_cooccurrence_counts_order_and_distance() -> None:
    counts = signals.cooccurrence(
        Histories.of([[0, 1, 2]]), 3, window=2, decay=0.5, backward=0.25
    ).toarray()
    assert counts[0, 1] == 1 and counts[1, 2] == 1  # next purchase
    assert counts[0, 2] == 0.5  # two steps later
    assert counts[1, 0] == 0.25 and counts[2, 0] == 0.125  # backwards
    unordered = signals.cooccurrence(
        Histories.of([[0, 1, 2]]), 3, window=0, decay=0.5, backward=0.25
    ).toarray()
    assert (unordered == 1 - np.eye(3)).all()


def test_prune_rows_keeps_the_strongest_neighbours() -> None:
    matrix = signals.cooccurrence(Histories.of([[0, 1, 2, 3]]), 4, window=3, decay=0.5, backward=1)
    pruned = signals.prune_rows(matrix, 1).toarray()
    assert (pruned > 0).sum(axis=1).tolist() == [1, 1, 1, 1]
    assert pruned[0, 1] == matrix[0, 1]


def test_ties_count_against_the_target() -> None:
    candidates = np.array([[5, 6, 7], [5, 6, -1]])
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 9.0]], dtype=np.float32)
    assert target_ranks(scores, candidates, np.array([0, 0])).tolist() == [1, 1]


def test_metrics_of_known_ranks() -> None:
    tasks = RankingTasks(
        [np.zeros(1, np.int64)] * 2, np.array([[1, 2, 3], [1, 2, 3]]), np.array([0, 2])
    )
    scores = np.array([[3, 2, 1], [3, 2, 1]], dtype=np.float32)
    result = metrics(scores, tasks)
    assert result.hr1 == 0.5 and result.hr10 == 1.0
    assert result.ndcg10 == pytest.approx((1 + 1 / np.log2(4)) / 2)


def test_weights_follow_the_informative_feature() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 10, len(FEATURES))).astype(np.float32)
    target = rng.integers(0, 10, size=200)
    features[np.arange(200), target, FEATURES.index("content")] += 2.0  # content tells
    tasks = RankingTasks(
        [np.zeros(1, np.int64)] * 200, np.tile(np.arange(10), (200, 1)), target.astype(np.int64)
    )
    weights, score = fit_weights(features, tasks)
    assert weights.content > abs(weights.popularity) and weights.content > 1
    assert score > metrics(features @ Weights().array(), tasks).ndcg10


def test_embeddings_of_other_sizes_become_zero_rows() -> None:
    good = np.ones(4, dtype="<f4").tobytes()
    matrix = decode_embeddings([good, None, np.ones(3, dtype="<f4").tobytes(), good])
    assert matrix.shape == (4, 4) and matrix[1].sum() == 0 and matrix[2].sum() == 0


def test_reranker_answer_parsing_keeps_valid_distinct_choices() -> None:
    answer = "2 | goes with your console\nnonsense\n2 | again\n9 | out of range\n1: fine"
    assert parse(answer, count=3, n=5) == [(1, "goes with your console"), (0, "fine")]


def test_a_big_catalog_scores_content_on_its_nearest_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 48)).astype(np.float32)
    vectors = np.repeat(centres, 50, axis=0) + 0.1 * rng.normal(size=(400, 48)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    big = ContentIndex(vectors, exact_limit=100)
    assert not big.exact
    shortlist = big.shortlist(vectors[[7]], size=40)
    assert 40 <= len(shortlist) < 400 and set(range(50)) <= set(shortlist.tolist())

    histories = Histories.of([[i, i + 1] for i in range(0, 400, 2)])
    model = HybridModel.fit(histories, vectors, params=DEFAULT_PARAMS, content=big)
    weights = Weights(cooc=1, hop2=1, content=1, content_max=1, popularity=0.1)
    scored = model.score(np.array([3]), weights, shortlist=20)
    assert 2 in scored.items.tolist()  # bought together with 3
    top = scored.items[np.argsort(-scored.scores)][:10]
    assert set(top.tolist()) <= set(range(50))  # the rest of the best come from 3's cluster
