"""The backend conformance suite: what every ``IndexBackend`` must do, written once, run against each backend.

``test_conformance.py`` runs these checks against the embedded backend always and against Elasticsearch when
``RAG_ES_URL`` is set. Each check takes a fresh backend and a unique name prefix for the indexes it creates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from rag_platform.backends import BackendError, BulkWriteError, IndexBackend, IndexMissing
from rag_platform.records import ChunkMetadata, IndexedChunk, sha256_hex

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

DIM = 8
META = {"model": "contract-model", "chunker_fingerprint": "contract-chunker"}


def unit(*weights: float) -> list[float]:
    vector = list(weights) + [0.0] * (DIM - len(weights))
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def chunk(cid: str, text: str, vector: list[float], document: str = "doc-a") -> IndexedChunk:
    return IndexedChunk(
        chunk_id=cid,
        document_id=document,
        source=f"file:///corpus/{document}.md",
        title=f"Title {document}",
        text=text,
        document_version="v1",
        run_id="run-1",
        vector=vector,
        heading_path="Guide > Section",
    )


CORPUS = [
    chunk("c01", "vector databases store embeddings for nearest neighbour search", unit(1, 0), "doc-a"),
    chunk("c02", "the alias points at the served index version", unit(0, 1), "doc-a"),
    chunk("c03", "quarantine keeps unreadable documents with a reason", unit(0, 0, 1), "doc-b"),
    chunk("c04", "rollback moves the alias back to an earlier version", unit(0, 1, 0.2), "doc-b"),
]


def build(backend: IndexBackend, name: str, chunks: list[IndexedChunk] = CORPUS) -> None:
    backend.create_version(name, DIM, {**META, "alias": name.rsplit("-", 1)[0]})
    backend.upsert(name, chunks)
    backend.refresh(name)


def check_create_is_idempotent_and_empty(backend: IndexBackend, prefix: str) -> None:
    name = f"{prefix}-v1"
    backend.create_version(name, DIM, META)
    backend.create_version(name, DIM, META)
    backend.refresh(name)
    assert backend.count(name) == 0


def check_upsert_reupsert_delete_count(backend: IndexBackend, prefix: str) -> None:
    name = f"{prefix}-v1"
    build(backend, name)
    assert backend.count(name) == 4
    backend.upsert(name, [chunk("c02", "the alias now names the served version", unit(0, 1))])
    backend.refresh(name)
    assert backend.count(name) == 4, "re-upserting an id must not duplicate it"
    [stored] = backend.get(name, ["c02"])
    assert stored.text == "the alias now names the served version"
    assert backend.delete(name, ["c03", "never-existed"]) == 2
    backend.refresh(name)
    assert backend.count(name) == 3
    assert backend.get(name, ["c03"]) == []
    assert backend.chunk_hashes(name) == {
        "c01": sha256_hex(CORPUS[0].text),
        "c02": sha256_hex("the alias now names the served version"),
        "c04": sha256_hex(CORPUS[3].text),
    }


def check_get_round_trips_vectors_and_provenance(backend: IndexBackend, prefix: str) -> None:
    name = f"{prefix}-v1"
    build(backend, name)
    got = {c.chunk_id: c for c in backend.get(name, ["c04", "c01"])}
    assert sorted(got) == ["c01", "c04"]
    original = CORPUS[3]
    assert got["c04"].vector == pytest.approx(original.vector, abs=1e-6)
    for field in ("document_id", "source", "title", "text", "document_version", "run_id", "heading_path"):
        assert getattr(got["c04"], field) == getattr(original, field), field


def check_metadata_update_keeps_text_and_vector(backend: IndexBackend, prefix: str) -> None:
    name = f"{prefix}-v1"
    build(backend, name)
    update = ChunkMetadata("c04", "Title doc-b, renamed", "Guide > Renamed", "v2", "run-2")
    with pytest.raises(BulkWriteError) as refused:
        backend.update_metadata(name, [update, ChunkMetadata("never-existed", "t", "", "v2", "run-2")])
    assert [cid for cid, _ in refused.value.failures] == ["never-existed"]
    backend.refresh(name)
    assert backend.count(name) == 4, "an update of an unknown id must not create it"
    [stored] = backend.get(name, ["c04"])
    original = CORPUS[3]
    assert (stored.title, stored.heading_path, stored.document_version, stored.run_id) == (
        "Title doc-b, renamed",
        "Guide > Renamed",
        "v2",
        "run-2",
    )
    assert (stored.text, stored.source, stored.document_id) == (original.text, original.source, original.document_id)
    assert stored.vector == pytest.approx(original.vector, abs=1e-6)
    assert backend.chunk_hashes(name)["c04"] == sha256_hex(original.text)
    assert backend.search_dense(name, original.vector, 1, {"document_version": "v2"})[0].chunk_id == "c04"
    assert backend.search_keyword(name, "rollback alias", 1)[0].chunk_id == "c04"


def check_dense_search_orders_by_cosine(backend: IndexBackend, prefix: str) -> None:
    name = f"{prefix}-v1"
    build(backend, name)
    hits = backend.search_dense(name, unit(0, 1), 3)
    assert hits[0].chunk_id == "c02"
    assert hits[0].score == pytest.approx(1.0, abs=0.02)  # cosine similarity, not a backend-specific scale
    assert hits[1].chunk_id == "c04"
    assert hits[0].score >= hits[1].score >= hits[2].score


def check_dense_ties_break_by_chunk_id(backend: IndexBackend, prefix: str) -> None:
    name = f"{prefix}-v1"
    same = unit(0, 0, 0, 1)
    build(backend, name, [chunk("t3", "three", same), chunk("t1", "one", same), chunk("t2", "two", same)])
    assert [h.chunk_id for h in backend.search_dense(name, same, 3)] == ["t1", "t2", "t3"]


def check_keyword_search_is_bm25_over_live_chunks(backend: IndexBackend, prefix: str) -> None:
    name = f"{prefix}-v1"
    build(backend, name)
    hits = backend.search_keyword(name, "quarantine unreadable", 2)
    assert hits and hits[0].chunk_id == "c03" and hits[0].score > 0
    backend.delete(name, ["c03"])
    backend.refresh(name)
    assert all(h.chunk_id != "c03" for h in backend.search_keyword(name, "quarantine unreadable", 5))
    assert backend.search_keyword(name, "   ", 5) == []


def check_hybrid_fuses_both_rankings(backend: IndexBackend, prefix: str) -> None:
    name = f"{prefix}-v1"
    build(backend, name)
    # Dense favours c01; keyword favours c04: both lists contribute to the fused top 2.
    hits = backend.search_hybrid(name, "rollback earlier", unit(1, 0), 2, rrf_k=60, candidates=10)
    assert {h.chunk_id for h in hits} == {"c01", "c04"}
    assert hits[0].score >= hits[1].score > 0


def check_filters_match_exactly(backend: IndexBackend, prefix: str) -> None:
    name = f"{prefix}-v1"
    build(backend, name)
    only_b = {"document_id": "doc-b"}
    assert {h.document_id for h in backend.search_dense(name, unit(1, 0), 4, only_b)} == {"doc-b"}
    assert {h.chunk_id for h in backend.search_keyword(name, "alias version", 4, only_b)} == {"c04"}
    either = {"source": ["file:///corpus/doc-a.md", "file:///corpus/doc-b.md"], "title": "Title doc-a"}
    assert {h.chunk_id for h in backend.search_dense(name, unit(1, 0), 4, either)} == {"c01", "c02"}
    with pytest.raises(ValueError, match="unknown filter field"):
        backend.search_dense(name, unit(1, 0), 4, {"vector": "x"})


def check_alias_swap_rollback_and_drop(backend: IndexBackend, prefix: str) -> None:
    alias = f"{prefix}-served"
    first, second = f"{alias}-0001", f"{alias}-0002"
    assert backend.resolve_alias(alias) is None
    build(backend, first, CORPUS[:2])
    backend.swap_alias(alias, first)
    assert backend.resolve_alias(alias) == first
    build(backend, second, CORPUS)
    backend.swap_alias(alias, second)
    assert backend.resolve_alias(alias) == second
    versions = {v.name: v for v in backend.list_versions(alias)}
    assert set(versions) == {first, second}
    assert versions[second].served and not versions[first].served
    assert (versions[first].count, versions[second].count) == (2, 4)
    backend.swap_alias(alias, first)  # rollback
    assert backend.resolve_alias(alias) == first
    with pytest.raises(BackendError, match="served"):
        backend.drop(first)
    backend.drop(second)
    backend.drop(second)  # dropping twice is a no-op
    assert [v.name for v in backend.list_versions(alias)] == [first]
    with pytest.raises(IndexMissing):
        backend.count(second)


def check_missing_index_is_index_missing(backend: IndexBackend, prefix: str) -> None:
    with pytest.raises(IndexMissing):
        backend.search_keyword(f"{prefix}-absent", "anything", 3)
    with pytest.raises(IndexMissing):
        backend.swap_alias(f"{prefix}-alias", f"{prefix}-absent")


def check_writes_to_the_served_version_stay_unseen_until_the_swap(
    writer: IndexBackend, reader: IndexBackend, prefix: str
) -> None:
    """The pinning contract (``rag_platform.backends.base``), with two handles on one store: in-place writes to
    the served version are seen by the handle that writes it and by nobody else until ``swap_alias``; a writer
    that never swaps (a killed run) changes nothing served, and the next writer continues from its writes."""
    alias = f"{prefix}-served"
    name, other = f"{alias}-0001", f"{alias}-0002"
    build(writer, name, CORPUS[:3])
    writer.swap_alias(alias, name)
    published = reader.chunk_hashes(name)
    assert reader.resolve_alias(alias) == name and len(published) == 3

    fresh = chunk("c05", "pinning keeps unpublished writes out of search", unit(0, 0, 0, 1), "doc-c")
    edited = chunk("c01", "vector stores answer nearest neighbour queries", unit(1, 0))
    writer.open_for_writes(name)
    writer.upsert(name, [fresh, edited])
    writer.update_metadata(name, [ChunkMetadata("c03", "Title doc-b", "", "v2", "run-2")])
    writer.delete(name, ["c02"])
    writer.refresh(name)
    latest = {"c01": sha256_hex(edited.text), "c03": published["c03"], "c05": sha256_hex(fresh.text)}
    assert writer.chunk_hashes(name) == latest and writer.count(name) == 3, "the writer reads its own writes"
    assert [h.chunk_id for h in writer.search_keyword(name, "pinning unpublished", 3)] == ["c05"]
    assert [c.document_version for c in writer.get(name, ["c03"])] == ["v2"]

    def unchanged() -> None:
        assert reader.chunk_hashes(name) == published and reader.count(name) == 3
        assert [c.document_version for c in reader.get(name, ["c03"])] == ["v1"]
        assert reader.search_keyword(name, "pinning unpublished", 3) == []
        assert reader.search_dense(name, unit(0, 1), 1)[0].chunk_id == "c02"
        assert [c.text for c in reader.get(name, ["c01", "c05"])] == [CORPUS[0].text]
        assert reader.resolve_alias(alias) == name

    unchanged()
    # The writer is "killed": it never swaps. The reader becomes the next writer and continues from there.
    reader.open_for_writes(name)
    assert reader.chunk_hashes(name) == latest, "a new writer reads the version's latest state"
    later = chunk("c06", "the next run converges on the ledger", unit(0, 0, 0, 0, 1), "doc-c")
    reader.upsert(name, [later])
    reader.refresh(name)
    observer = writer  # the killed handle's reads, like any other handle's, follow the published state
    reader.swap_alias(alias, name)
    latest["c06"] = sha256_hex(later.text)
    for handle in (reader, observer):
        assert handle.chunk_hashes(name) == latest and handle.count(name) == 4
        assert [h.chunk_id for h in handle.search_keyword(name, "pinning unpublished", 3)] == ["c05"]
    # Rollback and re-publication keep working, and no staging state shows as a version of its own.
    build(reader, other, CORPUS)
    reader.swap_alias(alias, other)
    reader.swap_alias(alias, name)
    assert writer.resolve_alias(alias) == name and writer.chunk_hashes(name) == latest
    versions = {v.name: (v.count, v.served) for v in writer.list_versions(alias)}
    assert versions == {name: (4, True), other: (4, False)}
    writer.drop(other)
    with pytest.raises(BackendError, match="served"):
        writer.drop(name)
    assert [v.name for v in reader.list_versions(alias)] == [name]


PAIRED_CHECKS: list[Callable[[IndexBackend, IndexBackend, str], None]] = [
    check_writes_to_the_served_version_stay_unseen_until_the_swap,
]


CHECKS: list[Callable[[IndexBackend, str], None]] = [
    check_create_is_idempotent_and_empty,
    check_upsert_reupsert_delete_count,
    check_get_round_trips_vectors_and_provenance,
    check_metadata_update_keeps_text_and_vector,
    check_dense_search_orders_by_cosine,
    check_dense_ties_break_by_chunk_id,
    check_keyword_search_is_bm25_over_live_chunks,
    check_hybrid_fuses_both_rankings,
    check_filters_match_exactly,
    check_alias_swap_rollback_and_drop,
    check_missing_index_is_index_missing,
]


def delete_prefixed(client: Elasticsearch, prefix: str) -> None:
    """Delete every index under ``prefix`` by its concrete name, and with it its aliases.

    Wildcard index deletes are refused since 8.0 (``action.destructive_requires_name`` defaults to true,
    elasticsearch PR #85591), so the names are listed first; deleting an index removes the aliases on it.
    """
    names = sorted(client.indices.get_alias(index=f"{prefix}*", allow_no_indices=True))
    if names:
        client.indices.delete(index=",".join(names), ignore_unavailable=True)
