"""The index gates a candidate version must pass before the alias may move to it."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import numpy as np

from rag_platform.gates import Gate
from rag_platform.index_ledger import chunk_rows, vectors_for

if TYPE_CHECKING:
    import duckdb

    from rag_platform.backends import IndexBackend

DELETE_FRACTION = "index_delete_fraction_within_limit"
MATCHES_LEDGER = "index_matches_ledger"
RETRIEVAL_QUALITY = "retrieval_quality_within_tolerance"
RETRIEVAL_GAIN = "retrieval_quality_improves"  # fine-tuning candidates only
INDEX_GATES = (MATCHES_LEDGER, DELETE_FRACTION, RETRIEVAL_QUALITY, RETRIEVAL_GAIN)


def delete_fraction_gate(
    con: duckdb.DuckDBPyConnection, served: str | None, chunker_fp: str, max_fraction: float
) -> Gate:
    """Refuse to publish when a run would drop more than ``max_fraction`` of the served documents (an unmounted
    source folder looks like a mass delete)."""
    if not served:
        return Gate(DELETE_FRACTION, True, "no served index yet")
    served_docs = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT document_id FROM index_state WHERE index_name = ? AND document_id IS NOT NULL", [served]
        ).fetchall()
    }
    if not served_docs:
        return Gate(DELETE_FRACTION, True, "served index is empty")
    live = {
        r[0] for r in con.execute("SELECT DISTINCT document_id FROM chunks WHERE chunker = ?", [chunker_fp]).fetchall()
    }
    removed = len(served_docs - live)
    fraction = removed / len(served_docs)
    message = (
        f"{removed} of {len(served_docs)} served documents would be deleted ({fraction:.0%}; limit {max_fraction:.0%})"
    )
    return Gate(DELETE_FRACTION, fraction <= max_fraction, message)


def ledger_match_gate(
    con: duckdb.DuckDBPyConnection, backend: IndexBackend, name: str, expected: int, model_id: str, sample: int = 20
) -> Gate:
    """The backend's count equals the ledger's live chunks, and a random sample round-trips text and vector."""
    count = backend.count(name)
    if count != expected:
        return Gate(MATCHES_LEDGER, False, f"index holds {count} chunks, ledger has {expected} live chunks")
    ids = [r[0] for r in con.execute("SELECT chunk_id FROM index_state WHERE index_name = ?", [name]).fetchall()]
    picked = random.Random(name).sample(ids, min(sample, len(ids)))
    stored = {c.chunk_id: c for c in backend.get(name, picked)}
    rows = {r["chunk_id"]: r for r in chunk_rows(con, picked)} if picked else {}
    vectors = vectors_for(con, model_id, sorted({r["text_hash"] for r in rows.values()}))
    for cid in picked:
        got, want = stored.get(cid), rows.get(cid)
        if got is None or want is None or got.text != want["text"]:
            return Gate(MATCHES_LEDGER, False, f"chunk {cid} did not round-trip through the index")
        if got.document_version != want["document_version"]:
            return Gate(MATCHES_LEDGER, False, f"chunk {cid} holds document version {got.document_version!r}")
        if not np.allclose(np.asarray(got.vector), np.asarray(vectors[want["text_hash"]]), atol=1e-5):
            return Gate(MATCHES_LEDGER, False, f"chunk {cid} vector differs from the embedding cache")
    return Gate(MATCHES_LEDGER, True, f"{count} chunks; {len(picked)} sampled chunks round-tripped")
