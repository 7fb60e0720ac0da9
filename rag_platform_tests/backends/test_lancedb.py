"""The embedded backend beyond the shared contract: hybrid search is the fusion of the full candidate lists on the
exact and the ANN path, and a reader picks up what another writer commits, compaction included."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest

from rag_platform.backends.lancedb import LanceDBBackend, dense_reach
from rag_platform.fusion import fuse_ids, reciprocal_rank_fusion
from rag_platform.records import IndexedChunk

DIM = 16
WORDS = "alpha beta gamma delta ledger shard cache amber rollback lineage refresh asset quality".split()


def corpus(size: int, seed: int = 1) -> list[IndexedChunk]:
    rng = random.Random(seed)
    vectors = np.random.default_rng(seed).standard_normal((size, DIM))
    return [
        IndexedChunk(
            chunk_id=f"c{i:04d}",
            document_id=f"doc-{i // 3}",
            source=f"file:///corpus/doc-{i // 3}.md",
            title=f"Doc {i // 3}",
            text=" ".join(rng.choices(WORDS, k=12)),
            document_version="v1",
            run_id="run-1",
            vector=[float(x) for x in vectors[i]],
        )
        for i in range(size)
    ]


def build(backend: LanceDBBackend, name: str, chunks: list[IndexedChunk]) -> None:
    backend.create_version(name, DIM, {"alias": "a"})
    backend.upsert(name, chunks)
    backend.refresh(name)


@pytest.mark.parametrize("ann_min_rows", [50_000, 256], ids=["exact", "ann"])
@pytest.mark.parametrize("weights", [(1.0, 0.05), (1.0, 1.0)], ids=["dense-led", "even"])
def test_hybrid_is_the_fusion_of_both_candidate_lists(
    tmp_path: Path, ann_min_rows: int, weights: tuple[float, float]
) -> None:
    chunks = corpus(300)
    text = {c.chunk_id: c.text for c in chunks}
    backend = LanceDBBackend(tmp_path / "index", ann_min_rows=ann_min_rows)
    build(backend, "v1", chunks)
    rng = random.Random(7)
    for probe in chunks[:12]:
        query = " ".join(rng.sample(WORDS, 3))
        expected = reciprocal_rank_fusion(
            [backend.search_dense("v1", probe.vector, 30), backend.search_keyword("v1", query, 30)], 5, 60, weights
        )
        hits = backend.search_hybrid("v1", query, probe.vector, 5, rrf_k=60, candidates=30, weights=weights)
        assert [(h.chunk_id, h.score) for h in hits] == [(h.chunk_id, h.score) for h in expected]
        assert all(h.text == text[h.chunk_id] for h in hits)
    backend.close()


def test_dense_reach_holds_every_hit_the_fusion_can_rank_in_the_top_k() -> None:
    rng = random.Random(3)
    ids = [f"d{i:03d}" for i in range(150)]
    for k, rrf_k, weights in [(10, 60, (1.0, 0.05)), (50, 60, (1.0, 0.05)), (5, 10, (1.0, 0.2)), (10, 60, (2.0, 0.1))]:
        reach = dense_reach(k, rrf_k, weights)
        assert 0 < reach <= 2 * k
        for _ in range(50):
            dense, keyword = rng.sample(ids, 100), rng.sample(ids, 100)
            fused = fuse_ids([dense, keyword], k, rrf_k, weights)
            assert {cid for cid, _ in fused} <= set(dense[:reach])
    assert dense_reach(10, 60, (1.0, 1.0)) == 0  # keyword alone can carry a hit into the top 10


def test_reader_sees_another_writers_commits(tmp_path: Path) -> None:
    chunks = corpus(40)
    writer = LanceDBBackend(tmp_path / "index")
    reader = LanceDBBackend(tmp_path / "index")
    build(writer, "v1", chunks)
    probe = chunks[5]
    assert reader.search_hybrid("v1", probe.text, probe.vector, 1)[0].chunk_id == probe.chunk_id

    fresh = dataclasses.replace(chunks[0], chunk_id="new", text="zebra quokka", vector=probe.vector)
    edited = dataclasses.replace(probe, text="narwhal okapi")
    writer.upsert("v1", [fresh, edited])
    writer.delete("v1", [chunks[6].chunk_id])
    writer.refresh("v1")  # compacts the table: every row id changes

    hits = reader.search_dense("v1", probe.vector, 3)
    assert {h.chunk_id: h.text for h in hits[:2]} == {"new": "zebra quokka", probe.chunk_id: "narwhal okapi"}
    assert [h.chunk_id for h in reader.search_keyword("v1", "okapi", 5)] == [probe.chunk_id]
    assert chunks[6].chunk_id not in {h.chunk_id for h in reader.search_hybrid("v1", "alpha", chunks[6].vector, 40)}
    writer.close()
    reader.close()


def test_refresh_brings_the_indexes_it_built_up_to_date(tmp_path: Path) -> None:
    backend = LanceDBBackend(tmp_path, ann_min_rows=256)
    chunks = corpus(600)
    build(backend, "v1", chunks[:599])

    def indexes() -> dict[str, tuple[str, int]]:
        return {i.name: (str(i.index_uuid), i.num_unindexed_rows) for i in backend._table("v1").list_indices()}

    built = indexes()
    assert {"text_idx", "chunk_id_idx", "vector_idx"} <= set(built)
    fresh = dataclasses.replace(chunks[599], text="zebra quokka")
    backend.upsert("v1", [fresh])
    backend.delete("v1", [chunks[0].chunk_id])
    backend.refresh("v1")
    # Every index holds the new row (none left unindexed) and the vector index was not trained again.
    after = indexes()
    assert {name: unindexed for name, (_, unindexed) in after.items()} == dict.fromkeys(built, 0)
    assert after["vector_idx"][0] == built["vector_idx"][0]
    assert [h.chunk_id for h in backend.search_keyword("v1", "quokka", 5)] == [fresh.chunk_id]
    assert backend.get("v1", [chunks[0].chunk_id]) == []
    assert backend.count("v1") == 599
