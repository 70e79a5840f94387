"""Knowledge-base QA on real data, beside BM25 and nearest-neighbour baselines, as Markdown.

    .venv/bin/python bench/eval_qa.py ../shared/data

* banking77 as FAQ retrieval: the knowledge base is train.csv (each row one FAQ phrasing, its
  intent the answer); each test.csv query is answered; top-1 intent accuracy and MRR@5.
* HINT3 ("I don't know"): accuracy with out-of-scope as its own class and out-of-scope recall on
  the three *_test.csv, with ONE threshold for all three bots. The threshold is chosen by
  cross-validation on the train sets alone: a quarter of the intents is held out as
  pseudo-out-of-scope, a fifth of the other rows as in-scope queries, and the threshold that
  maximises (in-scope accuracy + out-of-scope recall) / 2 over the three bots is kept.
* SubjQA electronics: is the question answerable from the review? The threshold is chosen on
  dev.csv, reported on test.csv, with token F1 of the best sentence (SQuAD 2.0 convention: an
  unanswerable row scores 1 when the system declines, 0 otherwise).

Every method runs in this one command on the same embeddings. Embeddings are cached under
var/eval-cache/ (one torch thread, so the benchmark shares a small machine politely).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
import shlex
import string
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from services.kb.chunking import split_sentences
from services.kb.index import LexicalIndex, top_k
from services.kb.retrieval import RetrievalConfig, Retriever

ROOT = Path(__file__).resolve().parent.parent
OOS = "NO_NODES_DETECTED"
BOTS = ("sofmattress", "curekart", "powerplay11")
Vectors = NDArray[np.float32]
# (KB vectors, KB texts, KB labels, query vectors, query texts) -> per query: label ranking, score
Method = Callable[
    [Vectors, list[str], list[str], Vectors, list[str]], list[tuple[list[str], float]]
]


class Embeddings:
    """MiniLM sentence embeddings, cached on disk by the exact list of texts."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self._model: object | None = None

    def __call__(self, texts: Sequence[str]) -> Vectors:
        key = hashlib.sha1("\x1f".join(texts).encode()).hexdigest()[:20]
        path = self.cache / f"minilm-{key}.npy"
        if path.exists():
            return np.load(path)
        import torch
        from sentence_transformers import SentenceTransformer

        from services.modelhost.offline import minilm_path

        torch.set_num_threads(1)
        if self._model is None:
            self._model = SentenceTransformer(str(minilm_path()), device="cpu")
        vectors = self._model.encode(  # type: ignore[attr-defined]
            list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True
        ).astype(np.float32)
        self.cache.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
        return vectors


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# --- methods: each ranks labels for every query and gives a confidence score --------------


def ours(config: RetrievalConfig | None = None) -> Method:
    def run(kb: Vectors, kb_texts: list[str], labels: list[str], q: Vectors, q_texts: list[str]):  # type: ignore[no-untyped-def]
        names = sorted(set(labels))
        groups = [names.index(label) for label in labels]
        hits = Retriever(kb, kb_texts, groups, config=config).search(q, q_texts, k=5)
        return [([names[h.group] for h in row], row[0].confidence) for row in hits]

    return run


def nearest_neighbour(
    kb: Vectors, kb_texts: list[str], labels: list[str], q: Vectors, q_texts: list[str]
):  # type: ignore[no-untyped-def]
    scores = q @ kb.T
    return [(_labels_by_rank(top_k(s, 50), labels), float(s.max())) for s in scores]


def bm25(kb: Vectors, kb_texts: list[str], labels: list[str], q: Vectors, q_texts: list[str]):  # type: ignore[no-untyped-def]
    index = LexicalIndex(kb_texts)
    out = []
    for text in q_texts:
        scores = index.scores(text)
        out.append((_labels_by_rank(top_k(scores, 50), labels), float(scores.max())))
    return out


def _labels_by_rank(rows: NDArray[np.intp], labels: list[str]) -> list[str]:
    ranked: list[str] = []
    for row in rows:
        if labels[row] not in ranked:
            ranked.append(labels[row])
    return ranked[:5]


METHODS: dict[str, Method] = {
    "hybrid kNN voting (ours)": ours(),
    "nearest neighbour (MiniLM)": nearest_neighbour,
    "BM25": bm25,
}


# --- banking77 -----------------------------------------------------------------------------


def banking77(data: Path, embed: Embeddings) -> list[list[str]]:
    train, test = read_csv(data / "train.csv"), read_csv(data / "test.csv")
    kb_texts, labels = [r["text"] for r in train], [r["category"] for r in train]
    q_texts, truth = [r["text"] for r in test], [r["category"] for r in test]
    kb, q = embed(kb_texts), embed(q_texts)
    rows = []
    for name, method in METHODS.items():
        ranked = [r for r, _ in method(kb, kb_texts, labels, q, q_texts)]
        accuracy = np.mean([r[0] == t for r, t in zip(ranked, truth, strict=True)])
        mrr = np.mean(
            [
                1 / (r.index(t) + 1) if t in r[:5] else 0.0
                for r, t in zip(ranked, truth, strict=True)
            ]
        )
        rows.append([name, f"{100 * accuracy:.1f}%", f"{mrr:.3f}"])
    return rows


# --- HINT3 ---------------------------------------------------------------------------------


@dataclass
class Bot:
    texts: list[str]
    labels: list[str]
    vectors: Vectors


def _pseudo_splits(bot: Bot, rng: np.random.Generator, repeats: int = 6):  # type: ignore[no-untyped-def]
    """Train-only folds: held-out intents play out-of-scope, held-out rows play in-scope."""
    labels = np.array(bot.labels)
    intents = sorted(set(bot.labels))
    for _ in range(repeats):
        held = set(rng.permutation(intents)[: len(intents) // 4])
        query = np.isin(labels, list(held))
        oos = query.copy()
        for intent in intents:
            rows = np.flatnonzero(labels == intent)
            if intent not in held and len(rows) >= 3:
                query[rng.choice(rows, max(1, len(rows) // 5), replace=False)] = True
        yield ~query, query, oos


def _decide(results: list[tuple[list[str], float]], threshold: float) -> list[str]:
    return [ranked[0] if score >= threshold else OOS for ranked, score in results]


def choose_threshold(bots: dict[str, Bot], method: Method) -> float:
    rng = np.random.default_rng(0)
    folds = []
    for bot in bots.values():
        for kb, query, oos in _pseudo_splits(bot, rng):
            idx = np.flatnonzero(query)
            results = method(
                bot.vectors[kb],
                [t for t, m in zip(bot.texts, kb, strict=True) if m],
                [t for t, m in zip(bot.labels, kb, strict=True) if m],
                bot.vectors[query],
                [bot.texts[i] for i in idx],
            )
            truth = [OOS if oos[i] else bot.labels[i] for i in idx]
            folds.append((results, truth))
    scores = np.concatenate([[s for _, s in results] for results, _ in folds])
    candidates = np.unique(np.quantile(scores, np.linspace(0, 1, 201)))

    def balanced(threshold: float) -> float:
        values = []
        for results, truth in folds:
            predicted = _decide(results, threshold)
            inside = [p == t for p, t in zip(predicted, truth, strict=True) if t != OOS]
            recall = [p == OOS for p, t in zip(predicted, truth, strict=True) if t == OOS]
            values.append((np.mean(inside) + np.mean(recall)) / 2)
        return float(np.mean(values))

    return float(max(candidates, key=balanced))


def hint3(data: Path, embed: Embeddings) -> tuple[list[list[str]], dict[str, float]]:
    def load(name: str) -> Bot:
        rows = read_csv(data / name)
        texts = [r["sentence"] for r in rows]
        return Bot(texts, [r["label"] for r in rows], embed(texts))

    train = {b: load(f"{b}_train.csv") for b in BOTS}
    test = {b: load(f"{b}_test.csv") for b in BOTS}
    rows, thresholds = [], {}
    for name, method in [
        *METHODS.items(),
        ("always answer (nearest neighbour)", nearest_neighbour),
    ]:
        always = name.startswith("always")
        threshold = -np.inf if always else choose_threshold(train, method)
        thresholds[name] = threshold
        cells = [name, "—" if always else f"{threshold:.3f}"]
        for bot in BOTS:
            kb, queries = train[bot], test[bot]
            results = method(kb.vectors, kb.texts, kb.labels, queries.vectors, queries.texts)
            predicted = _decide(results, threshold)
            truth = queries.labels
            accuracy = np.mean([p == t for p, t in zip(predicted, truth, strict=True)])
            recall = np.mean([p == OOS for p, t in zip(predicted, truth, strict=True) if t == OOS])
            cells.append(f"{accuracy:.3f} / {recall:.2f}")
        rows.append(cells)
    return rows, thresholds


# --- SubjQA --------------------------------------------------------------------------------


def _normalise(text: str) -> list[str]:
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def token_f1(predicted: str, truth: str) -> float:
    p, t = _normalise(predicted), _normalise(truth)
    common = sum((Counter(p) & Counter(t)).values())
    if not common:
        return 0.0
    precision, recall = common / len(p), common / len(t)
    return 2 * precision * recall / (precision + recall)


@dataclass
class Review:
    question: str
    answer: str | None  # None: not answerable from this review
    windows: list[str]  # two-sentence windows, the review's chunks
    sentences: list[str]


def _reviews(path: Path) -> list[Review]:
    out = []
    for row in read_csv(path):
        sentences = split_sentences(row["review"]) or [row["review"]]
        windows = [" ".join(sentences[i : i + 2]) for i in range(max(1, len(sentences) - 1))]
        answer = None if row["human_ans_spans"] == "ANSWERNOTFOUND" else row["human_ans_spans"]
        out.append(Review(row["question"], answer, windows, sentences))
    return out


def _score_reviews(
    reviews: list[Review], embed: Embeddings, method: str
) -> list[tuple[float, str]]:
    """For each review: the confidence that it answers the question, and the best sentence."""
    questions = embed([r.question for r in reviews])
    windows = embed([w for r in reviews for w in r.windows])
    sentences = embed([s for r in reviews for s in r.sentences])
    out, wi, si = [], 0, 0
    for i, review in enumerate(reviews):
        w = windows[wi : wi + len(review.windows)]
        s = sentences[si : si + len(review.sentences)]
        wi, si = wi + len(review.windows), si + len(review.sentences)
        if method == "BM25":
            score = float(LexicalIndex(review.windows).scores(review.question).max())
        elif method.startswith("nearest"):
            score = float((w @ questions[i]).max())
        else:
            hit = Retriever(w, review.windows).search(questions[i], [review.question], k=1)[0][0]
            score = hit.confidence
        out.append((score, review.sentences[int(np.argmax(s @ questions[i]))]))
    return out


def lowest_near_best(scored: list[tuple[float, str]], answerable: list[bool]) -> float:
    """The lowest threshold whose dev accuracy is within a point of the best one: the curve is
    flat, and a cited weak match costs a user less than a refusal."""
    grid = np.unique([s for s, _ in scored])
    accuracy = np.array(
        [
            np.mean([(s >= t) == a for (s, _), a in zip(scored, answerable, strict=True)])
            for t in grid
        ]
    )
    return float(grid[np.flatnonzero(accuracy >= accuracy.max() - 0.01)[0]])


def subjqa(data: Path, embed: Embeddings) -> tuple[list[list[str]], float]:
    dev, test = _reviews(data / "dev.csv"), _reviews(data / "test.csv")
    rows, ours_threshold = [], 0.0
    for name in [*METHODS, "always answer"]:
        scoring = "nearest" if name == "always answer" else name
        dev_scores = _score_reviews(dev, embed, scoring)
        truth_dev = [r.answer is not None for r in dev]
        threshold = -np.inf
        if name != "always answer":
            threshold = lowest_near_best(dev_scores, truth_dev)
        if name.endswith("(ours)"):
            ours_threshold = threshold
        scored = _score_reviews(test, embed, scoring)
        answered = [s >= threshold for s, _ in scored]
        accuracy = np.mean(
            [a == (r.answer is not None) for a, r in zip(answered, test, strict=True)]
        )
        f1 = np.mean(
            [
                (token_f1(best, r.answer) if a else 0.0) if r.answer is not None else float(not a)
                for a, (_, best), r in zip(answered, scored, test, strict=True)
            ]
        )
        rows.append(
            [
                name,
                "—" if name == "always answer" else f"{threshold:.3f}",
                f"{100 * accuracy:.1f}%",
                f"{100 * f1:.1f}",
            ]
        )
    return rows, ours_threshold


# --- report --------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "data_dir",
        type=Path,
        nargs="?",
        default=ROOT.parent / "shared" / "data",
        help="folder holding banking77/, hint3/ and subjqa-electronics/",
    )
    parser.add_argument(
        "--only",
        choices=["banking77", "hint3", "subjqa"],
        action="append",
        help="run only these sets (repeatable)",
    )
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "eval-cache")
    args = parser.parse_args(argv)
    embed, only = Embeddings(args.cache), set(args.only or ["banking77", "hint3", "subjqa"])
    command = "python bench/eval_qa.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"`{command}`\n")
    started = time.perf_counter()
    if "banking77" in only:
        print(
            "### banking77 FAQ retrieval (KB = train.csv, 10,003 rows; test.csv, 3,080 queries)\n"
        )
        print(
            table(
                ["method", "top-1 intent accuracy", "MRR@5"],
                banking77(args.data_dir / "banking77", embed),
            )
        )
        print()
    if "hint3" in only:
        rows, _ = hint3(args.data_dir / "hint3", embed)
        print("### HINT3 v2 test sets: accuracy (out-of-scope as a class) / out-of-scope recall\n")
        print("One threshold for all three bots, chosen by cross-validation on the train sets.\n")
        print(table(["method", "threshold", *BOTS], rows))
        print()
    if "subjqa" in only:
        rows, _ = subjqa(args.data_dir / "subjqa-electronics", embed)
        print("### SubjQA electronics test.csv: answerable vs not (threshold chosen on dev.csv)\n")
        print(table(["method", "threshold", "answerable accuracy", "token F1"], rows))
        print()
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
