"""Train the intents adapter: contrastive LoRA on the packaged MiniLM, on labelled phrasings.

    .venv/bin/python bench/train_intents.py ../shared/data

Supervised-contrastive training (SetFit-style) on banking77 ``train.csv`` and the three HINT3
``*_train.csv``: each batch holds a few phrasings of several intents of one data set, and every
phrasing is pulled towards the other phrasings of its intent and away from the rest of the batch.
The test splits are never read here.

Two phases, the same hyper-parameters:

1. *dev*: a quarter of each HINT3 bot's intents and a fifth of the other rows (a tenth of
   banking77's rows) are held out, each held-out row with its near-duplicates; the adapter
   trained on the rest chooses the FAQ answer threshold (held-out intents play out-of-scope,
   held-out rows in-scope, as written and as typed in a chat; one threshold for the three bots)
   with the product's embedder (``minilm-intents``) and scorer. The dev adapter is kept in
   var/weights/, so ``--phase calibrate`` can choose the threshold again when the scorer
   changes, without training.
2. *final*: the same training on every training row; the file keeps that threshold in its metadata.

Only the adapter (LoRA matrices and LayerNorms, fp16) is written.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from tqdm import tqdm

from services.kb.calibration import (
    Fold,
    chat_typed,
    choose_threshold,
    near_duplicate_groups,
    pseudo_folds,
)
from services.providers.local_embeddings import (
    INTENTS_MODEL,
    INTENTS_WEIGHTS,
    EncoderAdapterConfig,
    load_sentence_model,
    read_adapter_config,
)
from services.providers.local_sentiment import add_lora, save_adapter

ROOT = Path(__file__).resolve().parent.parent
BOTS = ("sofmattress", "curekart", "powerplay11")


@dataclass(frozen=True)
class Rows:
    """Labelled phrasings of one data set."""

    name: str
    texts: list[str]
    labels: list[str]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def load_training_sets(data: Path) -> list[Rows]:
    banking = read_csv(data / "banking77" / "train.csv")
    sets = [Rows("banking77", [r["text"] for r in banking], [r["category"] for r in banking])]
    for bot in BOTS:
        rows = read_csv(data / "hint3" / f"{bot}_train.csv")
        sets.append(Rows(bot, [r["sentence"] for r in rows], [r["label"] for r in rows]))
    return sets


# --- dev split -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DevSplit:
    train: list[Rows]
    folds: list[Fold]  # per HINT3 bot: train rows as the KB, held-out rows as queries


def dev_split(sets: list[Rows], *, seed: int) -> DevSplit:
    """Held-out in-scope rows leave with their near-duplicates (judged by the plain MiniLM), so
    the dev adapter has not trained on a rewording of a dev question either."""
    from sentence_transformers import SentenceTransformer

    from services.modelhost.offline import minilm_path

    plain = SentenceTransformer(str(minilm_path()), device="cpu")
    rng = np.random.default_rng(seed)
    train, folds = [], []
    for rows in sets:
        if rows.name == "banking77":
            keep = rng.random(len(rows.texts)) >= 0.1
            train.append(_subset(rows, keep))
            continue
        vectors = np.asarray(
            plain.encode(rows.texts, batch_size=64, normalize_embeddings=True), dtype=np.float32
        )
        groups = near_duplicate_groups(vectors, rows.labels)
        kb, query, oos = next(pseudo_folds(rows.labels, rng=rng, repeats=1, groups=groups))
        train.append(_subset(rows, kb))
        folds.append(
            Fold(
                kb_texts=[t for t, m in zip(rows.texts, kb, strict=True) if m],
                kb_labels=[t for t, m in zip(rows.labels, kb, strict=True) if m],
                texts=[t for t, m in zip(rows.texts, query, strict=True) if m],
                truth=[
                    None if o else label
                    for label, q, o in zip(rows.labels, query, oos, strict=True)
                    if q
                ],
            )
        )
    return DevSplit(train, folds)


def _subset(rows: Rows, keep: NDArray[np.bool_]) -> Rows:
    pick = np.flatnonzero(keep)
    return Rows(rows.name, [rows.texts[i] for i in pick], [rows.labels[i] for i in pick])


# --- batches and loss ------------------------------------------------------------------------


def contrastive_batches(
    sets: list[Rows], *, intents: int, per_intent: int, rng: random.Random
) -> list[list[tuple[int, str]]]:
    """One epoch of batches: ``intents`` intents of one data set, ``per_intent`` phrasings each;
    every row appears once. Items are (global intent id, text)."""
    batches: list[list[tuple[int, str]]] = []
    offset = 0
    for rows in sets:
        names = sorted(set(rows.labels))
        by_intent: dict[int, list[str]] = defaultdict(list)
        for text, label in zip(rows.texts, rows.labels, strict=True):
            by_intent[offset + names.index(label)].append(text)
        offset += len(names)
        groups: list[tuple[int, list[str]]] = []
        for intent, texts in by_intent.items():
            rng.shuffle(texts)
            groups += [
                (intent, texts[i : i + per_intent]) for i in range(0, len(texts), per_intent)
            ]
        rng.shuffle(groups)
        width = min(intents, len(by_intent))
        while groups:
            batch: list[tuple[int, list[str]]] = []
            later: list[tuple[int, list[str]]] = []
            for group in groups:
                if len(batch) < width and all(group[0] != b[0] for b in batch):
                    batch.append(group)
                else:
                    later.append(group)
            groups = later
            if len(batch) > 1:
                batches.append([(intent, text) for intent, texts in batch for text in texts])
    rng.shuffle(batches)
    return batches


def supcon_loss(vectors: torch.Tensor, labels: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) over unit vectors."""
    logits = vectors @ vectors.t() / temperature
    eye = torch.eye(len(labels), dtype=torch.bool)
    logits = logits.masked_fill(eye, -1e9)
    positives = (labels[:, None] == labels[None, :]) & ~eye
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    has = positives.any(1)
    mean = (log_prob * positives).sum(1)[has] / positives.sum(1)[has]
    return -mean.mean()


def embed(model: Any, tokenizer: Any, texts: list[str], *, max_length: int) -> torch.Tensor:
    batch = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
    pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


# --- training --------------------------------------------------------------------------------


def build(config: EncoderAdapterConfig) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    from services.modelhost.offline import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModel.from_pretrained(minilm_path())
    add_lora(model, config)
    return tokenizer, model


def train(
    sets: list[Rows], args: argparse.Namespace, *, config: EncoderAdapterConfig, label: str
) -> tuple[Any, Any]:
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    tokenizer, model = build(config)
    params = [p for p in model.parameters() if p.requires_grad]
    epochs = [
        contrastive_batches(sets, intents=args.intents, per_intent=args.per_intent, rng=rng)
        for _ in range(args.epochs)
    ]
    steps = sum(len(e) for e in epochs)
    warmup = max(1, int(args.warmup * steps))
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / (steps - warmup)))
    )
    model.train()
    bar = tqdm(total=steps, desc=f"{label} training", mininterval=5)
    for batch in (b for e in epochs for b in e):
        labels = torch.tensor([intent for intent, _ in batch])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            vectors = embed(model, tokenizer, [t for _, t in batch], max_length=config.max_length)
        loss = supcon_loss(vectors, labels, temperature=args.temperature)
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    return tokenizer, model


def calibrate(adapter: Path, folds: list[Fold]) -> float:
    """The FAQ threshold for the product's embedder and scorer, with the dev ``adapter``: each
    fold as written and as typed in a chat (services/kb/calibration.py)."""
    model = load_sentence_model(
        INTENTS_MODEL, models_dir=ROOT / "var" / "models", device="cpu", adapter=adapter
    )

    def vectors(texts: list[str]) -> NDArray[np.float32]:
        return np.asarray(model.encode(texts, batch_size=64), dtype=np.float32)

    scored = [f for fold in folds for f in (fold, chat_typed(fold))]
    embedded = [(f, vectors(f.kb_texts), vectors(f.texts)) for f in scored]
    threshold, score = choose_threshold(embedded)
    print(f"dev: FAQ threshold {threshold:.3f}, balanced accuracy {score:.3f}", flush=True)
    return threshold


def store_threshold(path: Path, threshold: float) -> None:
    from safetensors.torch import load_file, save_file

    config = replace(read_adapter_config(path), faq_threshold=threshold)
    save_file(load_file(str(path)), str(path), metadata=config.to_metadata())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="folder holding banking77/ and hint3/")
    parser.add_argument("--out", type=Path, default=INTENTS_WEIGHTS, help="adapter file to write")
    parser.add_argument(
        "--phase",
        choices=["dev", "final", "both", "calibrate"],
        default="both",
        help="calibrate: choose the threshold again with the kept dev adapter, store it in --out",
    )
    parser.add_argument(
        "--threshold", type=float, help="skip the dev phase: the FAQ threshold to store"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--intents", type=int, default=16, help="intents per batch")
    parser.add_argument("--per-intent", type=int, default=4, help="phrasings per intent")
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup", type=float, default=0.06, help="fraction of steps")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=16.0)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bf16 autocast (faster on CPUs with AMX/AVX512-BF16)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    sets = load_training_sets(args.data_dir)
    config = EncoderAdapterConfig(
        rank=args.rank, alpha=args.alpha, dropout=args.dropout, max_length=args.max_length
    )
    started = time.perf_counter()
    threshold = args.threshold
    dev_adapter = ROOT / "var" / "weights" / "intents-dev.safetensors"
    if args.phase in ("dev", "both") and threshold is None:
        split = dev_split(sets, seed=args.seed)
        _, model = train(split.train, args, config=config, label="dev")
        save_adapter(model, dev_adapter, config=config)
        threshold = calibrate(dev_adapter, split.folds)
    if args.phase == "calibrate":
        threshold = calibrate(dev_adapter, dev_split(sets, seed=args.seed).folds)
        store_threshold(args.out, threshold)
    if args.phase in ("final", "both"):
        _, model = train(sets, args, config=config, label="final")
        save_adapter(model, args.out, config=replace(config, faq_threshold=threshold))
        size = args.out.stat().st_size / 1e6
        print(f"wrote {args.out} ({size:.2f} MB), FAQ threshold {threshold}")
    print(f"{(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
