"""Chinese sentiment offline: a linear model over hashed character n-grams.

The packaged MiniLM reads English only; a Chinese message given to the SST-2 adapter gets a
confident label that means nothing. Chinese needs no word segmentation for sentiment: the
characters and their pairs and triples (好吃, 不好, 太慢了) carry it. Each n-gram hashes (CRC-32)
into one of ``BUCKETS`` weights; a text's score is the mean weight of its n-grams plus a bias,
and its probability the logistic of that. ``bench/train_sentiment_zh.py`` trains the weights
on Chinese review sets whose licences allow it (food-delivery and online-shopping reviews), and
``bench/eval_sentiment.py --zh`` measures them on ChnSentiCorp.
"""

from __future__ import annotations

import re
import threading
import unicodedata
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from services.textforms import HAN
from services.types import Sentiment

WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "sentiment-zh-chars.safetensors"
BUCKETS = 1 << 18
NGRAMS = (1, 2, 3)
MAX_CHARS = 2000  # a review's sentiment is settled long before; bounds the work per message
FORMAT = "switchboard-zh-char-ngrams/1"

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Full-width forms folded (ＯＫ！ → ok!), lower case, runs of space as one."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text[:MAX_CHARS]).lower()).strip()


def ngram_buckets(text: str) -> NDArray[np.int64]:
    """The bucket of every character n-gram of ``text`` (repeats kept: they weigh more)."""
    chars = normalise(text)
    grams = [chars[i : i + n] for n in NGRAMS for i in range(len(chars) - n + 1)]
    grams = [g for g in grams if not g.isspace()]
    return np.fromiter(
        (zlib.crc32(g.encode("utf-8", "surrogatepass")) % BUCKETS for g in grams),
        np.int64,
        len(grams),
    )


class ChineseSentiment:
    """Labels Chinese texts with the committed n-gram weights; loads them on first use."""

    def __init__(self, weights: Path = WEIGHTS) -> None:
        self._path = weights
        self._weights: NDArray[np.float32] | None = None
        self._bias = 0.0
        self._lock = threading.Lock()

    def load(self) -> NDArray[np.float32]:
        with self._lock:
            if self._weights is None:
                from safetensors.numpy import load_file

                tensors = load_file(self._path)
                self._bias = float(tensors["bias"][0])
                self._weights = tensors["weights"].astype(np.float32)
            return self._weights

    def probability(self, text: str) -> float:
        """How likely ``text`` is positive, 0..1."""
        weights = self.load()
        buckets = ngram_buckets(text)
        score = self._bias + (float(weights[buckets].mean()) if len(buckets) else 0.0)
        return 1.0 / (1.0 + float(np.exp(-score)))

    def predict(self, texts: Sequence[str]) -> list[Sentiment]:
        return [from_probability(self.probability(text)) for text in texts]


def without_chinese(text: str) -> str:
    """``text`` with its Han characters blanked: what an English model should read of it."""
    return HAN.sub(" ", text)


def from_probability(positive: float) -> Sentiment:
    label = "positive" if positive >= 0.5 else "negative"
    return Sentiment(label, max(positive, 1.0 - positive))
