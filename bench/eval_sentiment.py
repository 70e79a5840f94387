"""SST-2 accuracy of the offline sentiment default beside the baselines, as a Markdown table.

    .venv/bin/python bench/eval_sentiment.py ../shared/data
    .venv/bin/python bench/eval_sentiment.py ../shared/data --zh

Baselines measured in the same run: the majority class of the training split and VADER (a
lexicon method; the compound score's sign decides). DistilBERT-SST-2's published figure is quoted,
not run. The model is tuned on dev only; test is the report split (../shared/EVALUATION.md).

With ``--zh``: Chinese, on ChnSentiCorp's dev split (the report split; its train split chose the
character model's epoch, nothing trained on it ships), accuracy and macro-F1 of the default as
it answers Chinese (the character n-gram model) beside the majority class of the character
model's training data and the MiniLM SST-2 adapter alone (what Chinese got before).
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from services.providers.local_sentiment import DEFAULT_MODEL, LocalSentimentAnalyzer

LABELS = ("negative", "positive")  # SST-2: 0 = negative, 1 = positive
DISTILBERT_SST2 = 91.3  # published GLUE dev accuracy of distilbert-base-uncased-finetuned-sst-2
Predictor = Callable[[Sequence[str]], list[str]]


def read_tsv(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        # QUOTE_NONE: sentences hold bare quotes that are text, not CSV quoting.
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        pairs = [(sentence, LABELS[int(label)]) for label, sentence in rows]
    return [s for s, _ in pairs], [label for _, label in pairs]


def majority(train_labels: list[str]) -> Predictor:
    label = Counter(train_labels).most_common(1)[0][0]
    return lambda texts: [label] * len(texts)


def vader() -> Predictor:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()

    def predict(texts: Sequence[str]) -> list[str]:
        scores = [analyzer.polarity_scores(t)["compound"] for t in texts]
        return ["positive" if s >= 0 else "negative" for s in scores]

    return predict


def local_model(model: str) -> Predictor:
    analyzer = LocalSentimentAnalyzer(model=model, device="cpu")
    return lambda texts: [s.label for s in analyzer.predict(texts)]


def accuracy(predict: Predictor, texts: list[str], labels: list[str]) -> float:
    predicted = predict(texts)
    return 100 * sum(p == g for p, g in zip(predicted, labels, strict=True)) / len(labels)


def macro_f1(predicted: list[str], labels: list[str]) -> float:
    scores = []
    for label in LABELS:
        hits = sum(p == g == label for p, g in zip(predicted, labels, strict=True))
        guessed, actual = predicted.count(label), labels.count(label)
        scores.append(2 * hits / (guessed + actual) if guessed + actual else 0.0)
    return 100 * sum(scores) / len(scores)


def zh_table(data_dir: Path) -> list[str]:
    from train_sentiment_zh import training_rows  # beside this script

    from services.textforms import is_chinese

    texts, labels = read_tsv(data_dir / "chnsenticorp" / "dev.tsv")
    train_labels = [LABELS[label] for _, label in training_rows(data_dir)]
    default = LocalSentimentAnalyzer(device="cpu")
    adapter_alone = LocalSentimentAnalyzer(device="cpu", chinese_weights=None)
    methods: list[tuple[str, Predictor]] = [
        ("majority class (the character model's training data)", majority(train_labels)),
        (
            "MiniLM SST-2 adapter alone (what Chinese got before)",
            lambda t: [s.label for s in adapter_alone.predict(t)],
        ),
        (
            "offline default: character n-grams for Chinese (ours)",
            lambda t: [s.label for s in default.predict(t)],
        ),
    ]
    routed = sum(map(is_chinese, texts))
    lines = ["| method | accuracy | macro-F1 |", "|---|---|---|"]
    for name, predict in methods:
        predicted = predict(texts)
        right = 100 * sum(p == g for p, g in zip(predicted, labels, strict=True)) / len(labels)
        lines.append(f"| {name} | {right:.1f} | {macro_f1(predicted, labels):.1f} |")
    lines.append(f"\nChnSentiCorp dev ({len(labels)} reviews; {routed} read as Chinese), %.")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="folder holding sst2/ (e.g. ../shared/data)")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help="minilm-sst2 or a sequence-classification model"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--zh", action="store_true", help="Chinese, on ChnSentiCorp dev")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    if args.zh:
        print("\n".join(zh_table(args.data_dir)) + f" Command: {command}")
        return 0

    folder = args.data_dir / "sst2"
    _, train_labels = read_tsv(folder / "train.tsv")
    splits = {name: read_tsv(folder / f"{name}.tsv") for name in ("dev", "test")}
    methods: list[tuple[str, Predictor]] = [
        ("majority class (train)", majority(train_labels)),
        ("VADER (compound ≥ 0)", vader()),
        (f"local `{args.model}` (ours)", local_model(args.model)),
    ]
    lines = [
        f"| method | dev ({len(splits['dev'][1])}) | test ({len(splits['test'][1])}) |",
        "|---|---|---|",
    ]
    for name, predict in methods:
        dev, test = (accuracy(predict, *splits[split]) for split in ("dev", "test"))
        lines.append(f"| {name} | {dev:.1f} | {test:.1f} |")
    quoted = "DistilBERT-SST-2 (published dev figure, quoted, not run)"
    lines.append(f"| {quoted} | {DISTILBERT_SST2} | — |")
    print("\n".join(lines))
    print(f"\nSST-2 accuracy, %. Command: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
