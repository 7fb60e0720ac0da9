"""Fill the embedding cache: embed every live chunk text it lacks (keyed by model id + text hash), so an
unchanged chunk is never embedded twice, whichever document or version it belongs to."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rag_platform import faults
from rag_platform.ingest import now
from rag_platform.warehouse import insert_columns, scalar

if TYPE_CHECKING:
    import duckdb

    from rag_platform.embedding import Embedder


@dataclass(slots=True)
class EmbedStats:
    embedded: int = 0
    cached: int = 0
    batches: int = 0
    model_seconds: float = 0.0  # time inside the model alone, to tell embedding from pipeline overhead


def embed_missing(
    con: duckdb.DuckDBPyConnection,
    embedder: Embedder,
    chunker_fp: str,
    run_id: str,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> EmbedStats:
    """Embed every live chunk text the cache lacks; each batch is committed before the next starts, so a
    killed run keeps what it embedded."""
    import pyarrow as pa

    stats = EmbedStats()
    model_id = embedder.model_id
    missing = con.execute(
        """
        SELECT DISTINCT c.text_hash, c.text FROM chunks c
        LEFT JOIN embedding_cache e ON e.model_id = ? AND e.text_hash = c.text_hash
        WHERE c.chunker = ? AND e.text_hash IS NULL
        ORDER BY length(c.text), c.text_hash
        """,
        [model_id, chunker_fp],
    ).fetchall()
    total = scalar(con, "SELECT count(DISTINCT text_hash) FROM chunks WHERE chunker = ?", [chunker_fp])
    stats.cached = total - len(missing)
    for start in range(0, len(missing), batch_size):
        batch = missing[start : start + batch_size]
        faults.checkpoint("embed")
        started = time.perf_counter()
        vectors = embedder.embed([text for _, text in batch])
        stats.model_seconds = round(stats.model_seconds + time.perf_counter() - started, 3)
        insert_columns(
            con,
            "embedding_cache",
            {
                "model_id": [model_id] * len(batch),
                "text_hash": [h for h, _ in batch],
                "vector": pa.array(list(vectors.astype(np.float32)), type=pa.list_(pa.float32())),
                "run_id": [run_id] * len(batch),
                "created_at": [now()] * len(batch),
            },
        )
        stats.embedded += len(batch)
        stats.batches += 1
        if progress is not None:
            progress(stats.embedded, len(missing))
    return stats
