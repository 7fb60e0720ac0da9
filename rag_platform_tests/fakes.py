"""Deterministic stand-ins for the model-backed parts, for fast tests of the sync logic (the end-to-end tests
use the real model)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


class FakeEmbedder:
    """Unit vectors derived from a hash of each text: the same text always gets the same vector, different
    texts almost surely different ones. Counts what it embedded, so tests can assert nothing was redone."""

    def __init__(self, dimension: int = 8):
        self._dimension = dimension
        self.embedded: list[str] = []

    @property
    def model_id(self) -> str:
        return f"fake@{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded.extend(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            vector = np.random.default_rng(seed).standard_normal(self._dimension)
            rows.append(vector / np.linalg.norm(vector))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self._dimension)


def count_words(texts: Sequence[str]) -> list[int]:
    """A token counter without a tokenizer: one token per whitespace-separated word."""
    return [len(text.split()) for text in texts]
