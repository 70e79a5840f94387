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

"Ours" is what the service runs with ``EMBEDDING_MODEL=minilm-intents``: the plain MiniLM
paired with MiniLM plus the intents adapter (bench/train_intents.py, trained on the banking77
and HINT3 train sets only), and the hybrid retriever of services/kb/retrieval.py. Its HINT3
threshold is the one the adapter ships, chosen on intents held out of the adapter's training
(a threshold chosen here on the train sets would see intents the adapter was trained on).

Every method runs in this one command. Embeddings are cached under var/eval-cache/ (one torch
thread, so the benchmark shares a small machine politely).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
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

from services.kb.calibration import (
    best_threshold,
    near_duplicate_groups,
    pseudo_folds,
    typed_in_chat,
)
from services.kb.chunking import split_sentences
from services.kb.index import LexicalIndex, top_k
from services.kb.retrieval import (
    PASSAGE_THRESHOLD,
    SENTENCE_WEIGHT,
    RetrievalConfig,
    Retriever,
)
from services.providers.local_embeddings import (
    INTENTS_PASSAGE_THRESHOLD,
    INTENTS_WEIGHTS,
    read_adapter_config,
)

ROOT = Path(__file__).resolve().parent.parent
OOS = "NO_NODES_DETECTED"
BOTS = ("sofmattress", "curekart", "powerplay11")
Vectors = NDArray[np.float32]
# (KB vectors, KB texts, KB labels, query vectors, query texts) -> per query: label ranking, score
Method = Callable[
    [Vectors, list[str], list[str], Vectors, list[str]], list[tuple[list[str], float]]
]


class Embeddings:
    """Sentence embeddings of one model, cached on disk by the model and the exact texts.

    ``adapter`` None: the plain packaged MiniLM; a path: ``minilm-intents`` with that adapter
    (the plain MiniLM paired with the adapted one, as the service embeds)."""

    def __init__(self, cache: Path, *, adapter: Path | None = None) -> None:
        self.cache = cache
        self.adapter = adapter
        self.prefix = "minilm"
        if adapter is not None:
            self.prefix = "paired-" + hashlib.sha1(adapter.read_bytes()).hexdigest()[:12]
        self._model: object | None = None

    def __call__(self, texts: Sequence[str]) -> Vectors:
        key = hashlib.sha1("\x1f".join(texts).encode()).hexdigest()[:20]
        path = self.cache / f"{self.prefix}-{key}.npy"
        if path.exists():
            return np.load(path)
        import torch

        from services.providers.local_embeddings import (
            DEFAULT_MODEL,
            INTENTS_MODEL,
            load_sentence_model,
        )

        torch.set_num_threads(1)
        if self._model is None:
            self._model = load_sentence_model(
                DEFAULT_MODEL if self.adapter is None else INTENTS_MODEL,
                models_dir=ROOT / "var" / "models",
                device="cpu",
                adapter=self.adapter or INTENTS_WEIGHTS,
            )
        vectors = self._model.encode(  # type: ignore[attr-defined]
            list(texts),
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=len(texts) > 1000 and sys.stderr.isatty(),
        ).astype(np.float32)
        self.cache.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
        return vectors


@dataclass
class Spaces:
    """The plain MiniLM embeddings, and those of ``minilm-intents`` (MiniLM paired with
    MiniLM plus the intents adapter)."""

    plain: Embeddings
    intents: Embeddings

    def get(self, adapted: bool) -> Embeddings:
        return self.intents if adapted else self.plain


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# --- methods: each ranks labels for every query and gives a confidence score --------------


def ours(config: RetrievalConfig | None = None) -> Method:
    def run(kb: Vectors, kb_texts: list[str], labels: list[str], q: Vectors, q_texts: list[str]):  # type: ignore[no-untyped-def]
        names = sorted(set(labels))
        groups = [names.index(label) for label in labels]
        hits = Retriever(kb, kb_texts, groups, config=config).search(q, q_texts, k=5)
        return [([names[h.group] for h in row], row[0].faq_confidence) for row in hits]

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


@dataclass(frozen=True)
class Entry:
    method: Method
    adapted: bool  # runs on minilm-intents embeddings (MiniLM paired with the adapted MiniLM)
    product: bool = False  # the scorer the service runs, with its shipped FAQ threshold


OURS = "hybrid kNN voting, minilm-intents (ours)"
METHODS: dict[str, Entry] = {
    OURS: Entry(ours(), adapted=True, product=True),
    "hybrid kNN voting, plain MiniLM": Entry(ours(), adapted=False),
    "nearest neighbour, minilm-intents": Entry(nearest_neighbour, adapted=True),
    "nearest neighbour (MiniLM)": Entry(nearest_neighbour, adapted=False),
    "BM25": Entry(bm25, adapted=False),
}


# --- banking77 -----------------------------------------------------------------------------


def banking77(data: Path, spaces: Spaces) -> list[list[str]]:
    train, test = read_csv(data / "train.csv"), read_csv(data / "test.csv")
    kb_texts, labels = [r["text"] for r in train], [r["category"] for r in train]
    q_texts, truth = [r["text"] for r in test], [r["category"] for r in test]
    rows = []
    for name, entry in METHODS.items():
        embed = spaces.get(entry.adapted)
        kb, q = embed(kb_texts), embed(q_texts)
        ranked = [r for r, _ in entry.method(kb, kb_texts, labels, q, q_texts)]
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


def _decide(results: list[tuple[list[str], float]], threshold: float) -> list[str]:
    return [ranked[0] if score >= threshold else OOS for ranked, score in results]


def choose_threshold(bots: dict[str, Bot], method: Method, embed: Embeddings) -> float:
    """Cross-validation on the train sets (services/kb/calibration.py), for a model that has
    not seen them: held-out questions as written and as typed in a chat."""
    rng = np.random.default_rng(0)
    typing = random.Random(0)
    folds = []
    for bot in bots.values():
        groups = near_duplicate_groups(bot.vectors, bot.labels)
        for kb, query, oos in pseudo_folds(bot.labels, rng=rng, groups=groups):
            idx = np.flatnonzero(query)
            truth = [None if oos[i] else bot.labels[i] for i in idx]
            written = [bot.texts[i] for i in idx]
            typed = [typed_in_chat(text, typing) for text in written]
            for texts, vectors in ((written, bot.vectors[query]), (typed, embed(typed))):
                results = method(
                    bot.vectors[kb],
                    [t for t, m in zip(bot.texts, kb, strict=True) if m],
                    [t for t, m in zip(bot.labels, kb, strict=True) if m],
                    vectors,
                    texts,
                )
                folds.append(([(r[0], s) for r, s in results], truth))
    return best_threshold(folds)[0]


def hint3(
    data: Path, spaces: Spaces, *, shipped: float | None
) -> tuple[list[list[str]], dict[str, float]]:
    """``shipped``: the intents adapter's FAQ threshold, chosen by bench/train_intents.py on
    held-out training intents (the adapter has seen every training intent, so a threshold
    chosen here on the train sets would be too optimistic)."""

    def load(name: str, embed: Embeddings) -> Bot:
        rows = read_csv(data / name)
        texts = [r["sentence"] for r in rows]
        return Bot(texts, [r["label"] for r in rows], embed(texts))

    rows, thresholds = [], {}
    candidates = [
        (name, entry)
        for name, entry in METHODS.items()
        if not entry.adapted or (entry.product and shipped is not None)
    ]
    for name, entry in [
        *candidates,
        ("always answer (nearest neighbour)", Entry(nearest_neighbour, adapted=False)),
    ]:
        embed = spaces.get(entry.adapted)
        train = {b: load(f"{b}_train.csv", embed) for b in BOTS}
        test = {b: load(f"{b}_test.csv", embed) for b in BOTS}
        always = name.startswith("always")
        if always:
            threshold, shown = -np.inf, "—"
        elif entry.adapted:
            assert shipped is not None
            threshold, shown = shipped, f"{shipped:.3f} (shipped)"
        else:
            threshold = choose_threshold(train, entry.method, embed)
            shown = f"{threshold:.3f}"
        thresholds[name] = threshold
        cells = [name, shown]
        for bot in BOTS:
            kb, queries = train[bot], test[bot]
            results = entry.method(kb.vectors, kb.texts, kb.labels, queries.vectors, queries.texts)
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
            # As the service scores a passage: its confidence plus its best sentence's cosine
            # (window j holds sentences j and j + 1).
            hit = Retriever(w, review.windows).search(questions[i], [review.question], k=1)[0][0]
            sentence = float((s[hit.row : hit.row + 2] @ questions[i]).max())
            score = hit.confidence + SENTENCE_WEIGHT * sentence
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


def _accuracy(scored: list[tuple[float, str]], truth: list[bool], threshold: float) -> float:
    return float(np.mean([(s >= threshold) == t for (s, _), t in zip(scored, truth, strict=True)]))


def subjqa(data: Path, spaces: Spaces) -> tuple[list[list[str]], float]:
    dev, test = _reviews(data / "dev.csv"), _reviews(data / "test.csv")
    rows, ours_threshold = [], 0.0
    for name in [*METHODS, "always answer"]:
        scoring = "nearest" if name == "always answer" else name
        embed = spaces.get(name in METHODS and METHODS[name].adapted)
        dev_scores = _score_reviews(dev, embed, scoring)
        truth_dev = [r.answer is not None for r in dev]
        threshold = -np.inf
        if name != "always answer":
            threshold = lowest_near_best(dev_scores, truth_dev)
        if name == OURS:
            ours_threshold = threshold
        scored = _score_reviews(test, embed, scoring)
        truth = [r.answer is not None for r in test]
        answered = [s >= threshold for s, _ in scored]
        f1 = np.mean(
            [
                (token_f1(best, r.answer) if a else 0.0) if r.answer is not None else float(not a)
                for a, (_, best), r in zip(answered, scored, test, strict=True)
            ]
        )
        # The service's own passage threshold is calibrated on support documents
        # (bench/support_check.py --calibrate), not on reviews.
        shipped = {
            OURS: INTENTS_PASSAGE_THRESHOLD,
            "hybrid kNN voting, plain MiniLM": PASSAGE_THRESHOLD,
        }.get(name)
        rows.append(
            [
                name,
                "—" if name == "always answer" else f"{threshold:.3f}",
                f"{100 * _accuracy(scored, truth, threshold):.1f}%",
                f"{100 * f1:.1f}",
                "—"
                if shipped is None
                else f"{100 * _accuracy(scored, truth, shipped):.1f}% ({shipped:.2f})",
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
    parser.add_argument(
        "--adapter",
        type=Path,
        default=INTENTS_WEIGHTS,
        help="intents adapter (bench/train_intents.py); its metadata holds the FAQ threshold",
    )
    args = parser.parse_args(argv)
    spaces = Spaces(Embeddings(args.cache), Embeddings(args.cache, adapter=args.adapter))
    shipped = read_adapter_config(args.adapter).faq_threshold
    only = set(args.only or ["banking77", "hint3", "subjqa"])
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
                banking77(args.data_dir / "banking77", spaces),
            )
        )
        print()
    if "hint3" in only:
        rows, _ = hint3(args.data_dir / "hint3", spaces, shipped=shipped)
        print("### HINT3 v2 test sets: accuracy (out-of-scope as a class) / out-of-scope recall\n")
        print(
            "One threshold for all three bots, chosen on the train sets alone (held-out intents"
            " as out-of-scope; held-out rows with their near-duplicates as in-scope, as written"
            " and as typed in a chat): by cross-validation for the plain-MiniLM methods; for the"
            " adapter, the shipped one, chosen by bench/train_intents.py on data held out of its"
            " training.\n"
        )
        print(table(["method", "threshold", *BOTS], rows))
        print()
    if "subjqa" in only:
        rows, _ = subjqa(args.data_dir / "subjqa-electronics", spaces)
        print("### SubjQA electronics test.csv: answerable vs not (threshold chosen on dev.csv)\n")
        print(
            table(
                [
                    "method",
                    "threshold",
                    "answerable accuracy",
                    "token F1",
                    "accuracy at the service's threshold",
                ],
                rows,
            )
        )
        print()
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
