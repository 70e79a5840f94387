"""Train the offline Chinese sentiment weights: hashed character n-grams, logistic regression.

    .venv/bin/python bench/train_sentiment_zh.py ../shared/data

Trains on ``waimai-10k`` (food delivery) and ``online-shopping-10cats`` (ten product
categories), whose licences state no restriction; the classes are weighted to balance. The
epoch count is chosen on ``chnsenticorp/train.tsv``, read as a development set only: its licence
(Baidu LUGE) allows non-commercial research use, so nothing trained on it ships. The report
split, ``chnsenticorp/dev.tsv``, is never read here (``bench/eval_sentiment.py --zh`` scores it).
Writes ``services/weights/sentiment-zh-chars.safetensors`` (fp16, about 0.5 MB).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from services.providers.zh_sentiment import BUCKETS, FORMAT, NGRAMS, WEIGHTS, ngram_buckets

Rows = list[tuple[str, int]]


def read_csv(path: Path, text_column: str) -> Rows:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return [
            (row[text_column], int(row["label"]))
            for row in csv.DictReader(handle)
            if row[text_column].strip()
        ]


def read_tsv(path: Path) -> Rows:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        return [(text, int(label)) for label, text in rows]


def training_rows(data: Path) -> Rows:
    return read_csv(data / "waimai-10k" / "waimai_10k.csv", "review") + read_csv(
        data / "online-shopping-10cats" / "online_shopping_10_cats_eval.csv", "review"
    )


class NgramModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weights = nn.EmbeddingBag(BUCKETS, 1, mode="mean")
        nn.init.zeros_(self.weights.weight)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, buckets: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.weights(buckets, offsets).squeeze(-1) + self.bias


def encode(rows: Rows) -> list[np.ndarray]:
    return [ngram_buckets(text) for text, _ in tqdm(rows, desc="n-grams", unit="text")]


def batch(encoded: list[np.ndarray], indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    pieces = [encoded[i] if len(encoded[i]) else np.zeros(1, np.int64) for i in indices]
    offsets = np.cumsum([0] + [len(p) for p in pieces[:-1]])
    return torch.from_numpy(np.concatenate(pieces)), torch.from_numpy(offsets)


def accuracy(model: NgramModel, encoded: list[np.ndarray], labels: list[int]) -> float:
    with torch.no_grad():
        buckets, offsets = batch(encoded, list(range(len(encoded))))
        predicted = (model(buckets, offsets) >= 0).long()
    return float((predicted == torch.tensor(labels)).float().mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="the folder holding waimai-10k/ etc.")
    parser.add_argument("--epochs", type=int, default=25, help="the most epochs to try")
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--output", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    started = time.perf_counter()
    train = training_rows(args.data_dir)
    dev = read_tsv(args.data_dir / "chnsenticorp" / "train.tsv")
    train_x, dev_x = encode(train), encode(dev)
    train_y, dev_y = [label for _, label in train], [label for _, label in dev]
    positives = sum(train_y)
    # Balanced classes: waimai has twice as many negative reviews as positive ones.
    class_weight = {
        1: len(train_y) / (2 * positives),
        0: len(train_y) / (2 * (len(train_y) - positives)),
    }
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model = NgramModel()
    optimiser = torch.optim.Adagrad(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, 0, {})
    for epoch in range(1, args.epochs + 1):
        order = list(range(len(train_x)))
        rng.shuffle(order)
        for start in range(0, len(order), args.batch_size):
            chunk = order[start : start + args.batch_size]
            buckets, offsets = batch(train_x, chunk)
            target = torch.tensor([train_y[i] for i in chunk], dtype=torch.float32)
            weight = torch.tensor([class_weight[train_y[i]] for i in chunk])
            loss = (loss_fn(model(buckets, offsets), target) * weight).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        dev_accuracy = accuracy(model, dev_x, dev_y)
        print(
            f"epoch {epoch}: train {accuracy(model, train_x, train_y):.3f}  dev {dev_accuracy:.4f}"
        )
        if dev_accuracy > best[0]:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = (dev_accuracy, epoch, state)
    dev_accuracy, epoch, state = best
    from safetensors.numpy import save_file

    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "weights": state["weights.weight"].squeeze(-1).numpy().astype(np.float16),
            "bias": state["bias"].numpy().astype(np.float16),
        },
        str(args.output),
        metadata={
            "format": FORMAT,
            "buckets": str(BUCKETS),
            "ngrams": ",".join(map(str, NGRAMS)),
            "epoch": str(epoch),
            "dev_accuracy": f"{dev_accuracy:.4f}",
        },
    )
    print(
        f"kept epoch {epoch} (ChnSentiCorp train as dev: {dev_accuracy:.2%}); wrote {args.output}"
        f" in {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
