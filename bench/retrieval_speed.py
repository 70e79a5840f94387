"""Knowledge-base retrieval latency over 100,000 chunks, beside a naive baseline in the same run.

    .venv/bin/python bench/retrieval_speed.py [--chunks 100000] [--queries 300]

Ours: the service's `Retriever.search` for one query at a time (as /ask runs it): a dense
matrix-vector product over all chunks, BM25 over the query terms' postings, and the neighbour
vote. Baseline: the same dense scores computed the unbatched way, one Python-level dot product
per chunk, then a full sort. Chunks are 384-dimensional unit vectors (MiniLM's size) with
Zipf-distributed 60-word texts, so BM25 postings are as long as in real prose. With --minilm
the packaged MiniLM also embeds each query first, the full path of a question, and then, as
/ask does before answering, the sentences of the 4 hits (uncached: the worst case).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from services.kb.retrieval import Retriever

DIM = 384


def corpus(
    chunks: int, rng: np.random.Generator
) -> tuple[NDArray[np.float32], list[str], list[str]]:
    vectors = rng.standard_normal((chunks, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vocabulary = np.array([f"w{i}" for i in range(30_000)])
    ranks = np.minimum(rng.zipf(1.2, size=(chunks, 60)), len(vocabulary)) - 1
    texts = [" ".join(vocabulary[row]) for row in ranks]
    query_ranks = np.minimum(rng.zipf(1.2, size=(1000, 8)), len(vocabulary)) - 1
    return vectors, texts, [" ".join(vocabulary[row]) for row in query_ranks]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def timed(run: Callable[[int], object], count: int) -> list[float]:
    run(0)  # warm caches and lazy loads
    samples = []
    for i in range(count):
        started = time.perf_counter()
        run(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def naive(vectors: NDArray[np.float32], query: NDArray[np.float32], k: int) -> list[int]:
    scores = [float(np.dot(row, query)) for row in vectors]
    return sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[:k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--baseline-queries", type=int, default=20)
    parser.add_argument("--minilm", action="store_true", help="embed each query with MiniLM too")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors, texts, query_texts = corpus(args.chunks, rng)
    queries = rng.standard_normal((1000, DIM), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    started = time.perf_counter()
    retriever = Retriever(vectors, texts)
    build = time.perf_counter() - started

    def ours(i: int) -> object:
        return retriever.search(queries[i % 1000], [query_texts[i % 1000]], k=4)

    def baseline(i: int) -> object:
        return naive(vectors, queries[i % 1000], 4)

    rows = [
        ("hybrid search, one query (ours)", timed(ours, args.queries)),
        ("per-row Python loop, dense only (baseline)", timed(baseline, args.baseline_queries)),
    ]
    if args.minilm:
        import asyncio

        import torch

        from services.providers.local_embeddings import LocalEmbedder

        torch.set_num_threads(1)
        embedder = LocalEmbedder(device="cpu", max_wait_ms=0)
        loop = asyncio.new_event_loop()

        def full(i: int) -> object:
            text = query_texts[i % 1000]
            vector = loop.run_until_complete(embedder.embed([text]))[0]
            return retriever.search(vector, [text], k=4)

        def judged(i: int) -> object:
            # /ask then embeds the hits' sentences to judge them (services/kb/knowledge.py),
            # cached per chunk; timed here uncached, the worst case: 4 hits of 6 sentences.
            text = query_texts[i % 1000]
            vector = loop.run_until_complete(embedder.embed([text]))[0]
            hits = retriever.search(vector, [text], k=4)[0]
            sentences = []
            for hit in hits:
                words = texts[hit.row].split()
                sentences += [" ".join(words[j : j + 10]) + "." for j in range(0, len(words), 10)]
            return (loop.run_until_complete(embedder.embed(sentences)) @ vector).max()

        rows.insert(1, ("MiniLM query embedding + hybrid search", timed(full, args.queries // 3)))
        rows.insert(
            2,
            (
                "the same + judging the hits' sentences, uncached (24 sentences)",
                timed(judged, args.queries // 3),
            ),
        )

    print(f"`python bench/retrieval_speed.py {shlex.join(sys.argv[1:])}`\n")
    print(f"{args.chunks:,} chunks × {DIM} dims; index build (incl. BM25) {build:.1f} s\n")
    print("| method | queries | p50 ms | p95 ms |")
    print("|---|---|---|---|")
    for name, samples in rows:
        p50, p95 = percentiles(samples)
        print(f"| {name} | {len(samples)} | {p50:.1f} | {p95:.1f} |")
    ours_p95 = percentiles(rows[0][1])[1]
    base_p95 = percentiles(rows[-1][1])[1]
    print(
        f"\np95 speed-up over the baseline: {base_p95 / ours_p95:.0f}×; goal p95 < 50 ms: "
        f"{'met' if ours_p95 < 50 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
