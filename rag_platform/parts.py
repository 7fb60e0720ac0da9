"""The parts a run (or a query process) works with, resolved once from one settings snapshot.

``RunParts`` holds the frozen settings and builds the embedder, chunker and index backend from them on first
use; every step of a run receives the same parts, so a ``config.toml`` edited mid-run cannot give two steps
different settings. The embedder and chunker are process-wide caches keyed by their configuration (the model
loads once per process); the backend is one handle per ``RunParts``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_platform import warehouse
from rag_platform.backends import IndexBackend, make_backend
from rag_platform.chunking import Chunker, ChunkerConfig, cached_chunker
from rag_platform.config import Settings, load_settings
from rag_platform.embedding import Embedder, cached_embedder
from rag_platform.index_plan import IndexTarget
from rag_platform.index_sync import IndexPolicy
from rag_platform.records import stable_hash
from rag_platform.settings_checks import check_settings

if TYPE_CHECKING:
    import duckdb

logger = logging.getLogger("rag_platform.parts")


@dataclass(slots=True)
class RunParts:
    settings: Settings
    # A fine-tuning candidate's run: publish only when nDCG@10 beats the served version's by this much.
    min_gain: float | None = None
    _backend: IndexBackend | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _warming: threading.Thread | None = field(default=None, repr=False)

    @classmethod
    def resolve(cls, home: Path | None = None, embedding_model: str = "", min_gain: float | None = None) -> RunParts:
        """Read the settings of ``home`` (``$RAG_PLATFORM_HOME`` when None) once, checked against the model.

        ``embedding_model`` replaces ``embedding.model`` for this run (a fine-tuned candidate), and
        ``min_gain`` makes its publishing depend on beating the served version's retrieval quality."""
        settings = load_settings(home)
        if embedding_model:
            embedding = dataclasses.replace(settings.embedding, model=embedding_model)
            settings = dataclasses.replace(settings, embedding=embedding)
        check_settings(settings)
        return cls(settings, min_gain)

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def settings_fingerprint(self) -> str:
        return stable_hash(self.settings.as_dict(), 12)

    @property
    def chunker_config(self) -> ChunkerConfig:
        return ChunkerConfig.from_settings(self.settings)

    @property
    def chunker(self) -> Chunker:
        return cached_chunker(self.chunker_config)

    @property
    def embedder(self) -> Embedder:
        return cached_embedder(self.settings.embedding, self.settings.cache_dir)

    @property
    def backend(self) -> IndexBackend:
        with self._lock:
            if self._backend is None:
                self._backend = make_backend(self.settings)
            return self._backend

    def index_target(self) -> IndexTarget:
        embedder = self.embedder
        return IndexTarget(self.settings.index.alias, self.chunker_config, embedder.model_id, embedder.dimension)

    def index_policy(self) -> IndexPolicy:
        return IndexPolicy(
            keep_versions=self.settings.index.keep_versions,
            max_delete_fraction=self.settings.gates.max_delete_fraction,
            write_batch=self.settings.index.write_batch,
        )

    @contextmanager
    def warehouse(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The single read-write warehouse connection, for the duration of one write step."""
        with warehouse.writer(self.settings) as con:
            yield con

    def start_warmup(self) -> None:
        """Load GX, the index backend and the model on a background thread (once). Called where a run only
        waits (on the dbt subprocess), so the loading does not compete with steps that run Python. Failures
        are left for the step that needs the part to report."""
        if self._warming is not None:
            return

        def load() -> None:
            steps: list[Callable[[], Any]] = [
                functools.partial(importlib.import_module, "great_expectations"),
                lambda: self.backend.list_versions(self.settings.index.alias),
                lambda: self.embedder.dimension,
            ]
            for step in steps:  # in the order the steps need them
                try:
                    step()
                except Exception:
                    logger.debug("warm-up failed", exc_info=True)

        self._warming = threading.Thread(target=load, name="rag-warmup", daemon=True)
        self._warming.start()

    def close(self) -> None:
        """Wait for the warm-up (never leave a half-done import or model load to interpreter shutdown) and
        close the backend handle."""
        if self._warming is not None:
            self._warming.join()
            self._warming = None
        with self._lock:
            if self._backend is not None:
                self._backend.close()
                self._backend = None
