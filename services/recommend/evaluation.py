"""`switchboard eval recommend`: the hybrid and its baselines on both public datasets.

Every method's parameters and weights are chosen on the validation split (built from training
histories only); the report split is scored once per method, with what was chosen.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.recommend.datasets import Dataset, Split
from services.recommend.model import HybridModel, Params, Weights
from services.recommend.signals import FloatArray
from services.recommend.tuning import Metrics, blend, fit_weights, metrics, with_tie_break
from services.types import Embedder

log = logging.getLogger(__name__)

# The hybrid's search space, the same for every dataset: ordered short-window co-occurrence
# against whole-history co-occurrence, and strong against no recency weighting.
GRID = (
    Params(window=20, decay=0.8, neighbors=500, recency=0.7),
    Params(window=20, decay=0.8, neighbors=500, recency=0.85),
    Params(window=0, neighbors=100, recency=1.0),
    Params(window=0, neighbors=200, recency=1.0),
)
KNN_NEIGHBORS = (20, 50, 100, 200)
HYBRID = "hybrid (co-occurrence + content + popularity)"


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    params: Params
    weights: Weights
    validation_ndcg10: float


@dataclass(frozen=True, slots=True)
class Result:
    method: Method
    report: Metrics


async def cached_embeddings(
    texts: Sequence[str], *, embedder: Embedder, cache_dir: Path, name: str, batch: int = 256
) -> FloatArray:
    """Embeddings of ``texts``, from ``cache_dir`` when the same texts were embedded before."""
    digest = hashlib.sha1("\n".join([getattr(embedder, "name", ""), *texts]).encode()).hexdigest()
    path = cache_dir / f"{name}-{digest[:16]}.npy"
    cached = _load(path)
    if cached is not None:
        return cached
    started = time.perf_counter()
    parts = [await embedder.embed(list(texts[i : i + batch])) for i in range(0, len(texts), batch)]
    vectors = np.vstack(parts).astype(np.float32)
    log.info("embedded %d texts in %.0f s", len(texts), time.perf_counter() - started)
    _save(path, vectors)
    return vectors


def _load(path: Path) -> FloatArray | None:
    if not path.exists():
        return None
    vectors: FloatArray = np.load(path).astype(np.float32)
    return vectors


def _save(path: Path, vectors: FloatArray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)


def _features(split: Split, embeddings: FloatArray, params: Params) -> FloatArray:
    model = HybridModel.fit(split.train, embeddings, params=params)
    return model.candidate_features(split.tasks.histories, split.tasks.candidates)


def choose(
    dataset: Dataset,
    embeddings: FloatArray,
    *,
    grid: Sequence[Params] = GRID,
    progress: Callable[[str], None] = log.info,
) -> list[Method]:
    """Every method with the parameters and weights it scored best with on validation."""
    tasks = dataset.validation.tasks
    best: dict[str, Method] = {}

    def offer(name: str, params: Params, weights: Weights, features: FloatArray) -> None:
        score = metrics(blend(features, weights), tasks).ndcg10
        if name not in best or score > best[name].validation_ndcg10:
            best[name] = Method(name, params, weights, score)

    for params in grid:
        features = _features(dataset.validation, embeddings, params)
        weights, _ = fit_weights(features, tasks)
        offer(HYBRID, params, weights, features)
        offer("co-occurrence (+ popularity tie-break)", params, with_tie_break(Weights()), features)
        content, _ = fit_weights(features, tasks, active=("content", "content_max"))
        offer(
            "content: embeddings (+ popularity tie-break)",
            params,
            with_tie_break(content),
            features,
        )
        offer("popularity", params, Weights(cooc=0, popularity=1), features)
        score = best[HYBRID].validation_ndcg10
        progress(f"{dataset.name} validation: {params} -> best hybrid NDCG@10 {score:.4f}")
    for k in KNN_NEIGHBORS:
        # Classic item-kNN: cosine over who bought what, k neighbours, no order, no recency.
        params = Params(window=0, power=0.5, neighbors=k, recency=1.0)
        features = _features(dataset.validation, embeddings, params)
        offer(
            "item-kNN (cosine, + popularity tie-break)", params, with_tie_break(Weights()), features
        )
    return list(best.values())


def report(dataset: Dataset, embeddings: FloatArray, methods: Sequence[Method]) -> list[Result]:
    """Score each chosen method once on the report split (one model fit per parameter set)."""
    cache: dict[Params, FloatArray] = {}
    results = []
    for method in methods:
        if method.params not in cache:
            cache[method.params] = _features(dataset.report, embeddings, method.params)
        scores = blend(cache[method.params], method.weights)
        results.append(Result(method, metrics(scores, dataset.report.tasks)))
    return results


def markdown(results: dict[str, list[Result]]) -> str:
    """One table: a row per method, NDCG@10 / HR@1 / HR@10 per dataset."""
    names: list[str] = []
    for rows in results.values():
        names += [r.method.name for r in rows if r.method.name not in names]
    head = "| method | " + " | ".join(f"{d} NDCG@10 | {d} HR@1 | {d} HR@10" for d in results) + " |"
    lines = [head, "|---|" + "---:|" * (3 * len(results))]
    for name in names:
        cells = []
        for rows in results.values():
            found = next((r.report for r in rows if r.method.name == name), None)
            cells += (
                [f"{found.ndcg10:.4f}", f"{found.hr1:.4f}", f"{found.hr10:.4f}"]
                if found
                else ["–"] * 3
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe(results: dict[str, list[Result]]) -> str:
    lines = []
    for dataset, rows in results.items():
        users = rows[0].report.users if rows else 0
        lines.append(f"{dataset}: {users} report tasks")
        for r in rows:
            m = r.method
            lines.append(
                f"  {m.name}: validation NDCG@10 {m.validation_ndcg10:.4f}; {m.params}; "
                f"weights {m.weights.describe()}"
            )
    return "\n".join(lines)
