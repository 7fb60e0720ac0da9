"""Fast tests of the core: chunk sync, embedding sync, version planning, index sync and its gates, on a real
DuckDB warehouse and the embedded LanceDB backend, with a deterministic fake embedder (no model, no Dagster,
no dbt: ``current_documents`` is written directly, as the dbt model would leave it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from fakes import FakeEmbedder, count_words

from rag_platform.backends.lancedb import LanceDBBackend
from rag_platform.chunk_sync import ChunkStats, sync_chunks
from rag_platform.chunking import Chunker, ChunkerConfig
from rag_platform.embedding_sync import EmbedStats, embed_missing
from rag_platform.gates import Gate
from rag_platform.index_gates import DELETE_FRACTION, MATCHES_LEDGER, delete_fraction_gate, ledger_match_gate
from rag_platform.index_plan import IndexTarget, index_fingerprint, plan_index_version
from rag_platform.index_sync import IndexPolicy, IndexStats, QualityGate, sync_index
from rag_platform.warehouse import SCHEMA

ALIAS = "unit_chunks"
CONFIG = ChunkerConfig(max_tokens=24, overlap=4, tokenizer="words")
DEFAULT_POLICY = IndexPolicy()


def document(name: str, version: str = "1", paragraphs: int = 3) -> tuple[str, str, str, str, str]:
    text = "\n\n".join(f"{name} paragraph {i} version {version} " + "word " * 10 for i in range(paragraphs))
    return (f"file:///docs/{name}.md", f"v{version}-{name}", name.title(), f"# {name.title()}\n\n{text}", "/docs")


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    connection.execute(SCHEMA)
    connection.execute(
        "CREATE TABLE current_documents (uri VARCHAR, document_version VARCHAR, title VARCHAR, text VARCHAR, "
        "source VARCHAR)"
    )
    yield connection
    connection.close()


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LanceDBBackend]:
    store = LanceDBBackend(tmp_path / "index")
    yield store
    store.close()


def set_documents(con: duckdb.DuckDBPyConnection, *docs: tuple[str, str, str, str, str]) -> None:
    con.execute("DELETE FROM current_documents")
    if docs:
        con.executemany("INSERT INTO current_documents VALUES (?, ?, ?, ?, ?)", list(docs))


def refresh(
    con: duckdb.DuckDBPyConnection,
    backend: LanceDBBackend,
    embedder: FakeEmbedder,
    run_id: str,
    *,
    full: bool = False,
    policy: IndexPolicy = DEFAULT_POLICY,
    quality_gate: QualityGate | None = None,
) -> tuple[ChunkStats, EmbedStats, IndexStats]:
    chunker = Chunker(CONFIG, count_tokens=count_words)
    chunks = sync_chunks(con, chunker, run_id, full)
    embedded = embed_missing(con, embedder, CONFIG.fingerprint, run_id, batch_size=4)
    target = IndexTarget(ALIAS, CONFIG, embedder.model_id, embedder.dimension)
    index = sync_index(con, backend, target, run_id, full=full, policy=policy, quality_gate=quality_gate)
    return chunks, embedded, index


def live_chunk_ids(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT chunk_id FROM chunks").fetchall()}


def test_a_second_refresh_with_nothing_changed_does_nothing(
    con: duckdb.DuckDBPyConnection, backend: LanceDBBackend
) -> None:
    set_documents(con, document("alpha"), document("beta"))
    embedder = FakeEmbedder()
    chunks, embedded, index = refresh(con, backend, embedder, "r1")
    assert chunks.documents_chunked == 2 and chunks.chunks_added == chunks.chunks_total > 2
    assert embedded.embedded == len(embedder.embedded) == chunks.chunks_total
    assert index.published and index.new_version and index.count == chunks.chunks_total
    assert backend.resolve_alias(ALIAS) == index.version

    chunks, embedded, again = refresh(con, backend, embedder, "r2")
    assert (chunks.documents_chunked, embedded.embedded, again.upserted, again.deleted) == (0, 0, 0, 0)
    assert again.version == index.version and not again.new_version and again.published


def test_a_changed_document_is_redone_alone_and_a_removed_one_leaves_the_index(
    con: duckdb.DuckDBPyConnection, backend: LanceDBBackend
) -> None:
    set_documents(con, document("alpha"), document("beta"), document("gamma"))
    embedder = FakeEmbedder()
    refresh(con, backend, embedder, "r1")
    before = live_chunk_ids(con)
    embedder.embedded.clear()

    set_documents(con, document("alpha", version="2"), document("beta"))
    chunks, embedded, index = refresh(con, backend, embedder, "r2")
    assert chunks.documents_chunked == 1 and chunks.documents_removed == 1
    assert all("alpha" in text for text in embedder.embedded) and embedded.embedded == len(embedder.embedded) > 0
    after = live_chunk_ids(con)
    assert index.published and index.count == len(after)
    assert set(backend.chunk_hashes(index.version)) == after
    assert not any("gamma" in c.text for c in backend.get(index.version, sorted(before - after)))


def test_an_edit_rewrites_only_the_metadata_of_the_documents_unchanged_chunks(
    con: duckdb.DuckDBPyConnection, backend: LanceDBBackend
) -> None:
    embedder = FakeEmbedder()
    uri, _, title, text, source = document("alpha", paragraphs=6)
    set_documents(con, (uri, "v1-alpha", title, text, source))
    _, _, first = refresh(con, backend, embedder, "r1")
    embedder.embedded.clear()
    edited = text.replace("alpha paragraph 5 version 1", "alpha paragraph 5 now edited")
    set_documents(con, (uri, "v2-alpha", title, edited, source))
    _, embedded, index = refresh(con, backend, embedder, "r2")
    assert embedded.embedded == len(embedder.embedded) == 1 and "now edited" in embedder.embedded[0]
    assert index.upserted == 1 and index.updated == first.count - 1 and index.deleted == 1
    stored = backend.get(index.version, sorted(live_chunk_ids(con)))
    assert {(c.document_version, c.run_id) for c in stored} == {("v2-alpha", "r2")}
    assert index.gates[MATCHES_LEDGER].passed

    _, _, full = refresh(con, backend, embedder, "r3", full=True)
    rebuilt = backend.get(full.version, sorted(live_chunk_ids(con)))
    fields = ("chunk_id", "document_id", "source", "title", "text", "document_version", "heading_path", "vector")
    assert [[getattr(c, f) for f in fields] for c in stored] == [[getattr(c, f) for f in fields] for c in rebuilt]


def test_a_chunk_the_index_lost_is_written_whole_when_only_its_metadata_changed(
    con: duckdb.DuckDBPyConnection, backend: LanceDBBackend
) -> None:
    embedder = FakeEmbedder()
    uri, _, title, text, source = document("alpha")
    set_documents(con, (uri, "v1-alpha", title, text, source))
    _, _, first = refresh(con, backend, embedder, "r1")
    [lost, *_] = sorted(live_chunk_ids(con))
    backend.open_for_writes(first.version)
    # Gone behind the ledger's back, with a stray chunk in its place: the counts still agree.
    [held] = backend.get(first.version, [lost])
    backend.delete(first.version, [lost])
    backend.upsert(first.version, [dataclasses.replace(held, chunk_id="stray")])
    backend.refresh(first.version)
    set_documents(con, (uri, "v2-alpha", title, text, source))
    _, _, index = refresh(con, backend, embedder, "r2")
    assert (index.upserted, index.updated) == (1, first.count - 1)
    assert [c.document_version for c in backend.get(index.version, [lost])] == ["v2-alpha"]
    # The stray keeps this version from publishing; the next run trusts the index's contents and removes it.
    assert not index.published and "holds 4 chunks" in index.gates[MATCHES_LEDGER].message
    _, _, converged = refresh(con, backend, embedder, "r3")
    assert converged.published and converged.deleted == 1 and backend.get(converged.version, ["stray"]) == []
    assert [c.document_version for c in backend.get(index.version, [lost])] == ["v2-alpha"]


def test_incremental_equals_a_full_rebuild(con: duckdb.DuckDBPyConnection, backend: LanceDBBackend) -> None:
    embedder = FakeEmbedder()
    set_documents(con, document("alpha"), document("beta"))
    refresh(con, backend, embedder, "r1")
    set_documents(con, document("alpha", version="2"), document("delta"))
    _, _, incremental = refresh(con, backend, embedder, "r2")
    _, embedded, full = refresh(con, backend, embedder, "r3", full=True)
    assert embedded.embedded == 0  # the cache serves the rebuild
    assert full.new_version and full.version != incremental.version
    assert backend.chunk_hashes(full.version) == backend.chunk_hashes(incremental.version)


def test_a_mass_delete_is_blocked_and_the_served_index_keeps_its_documents(
    con: duckdb.DuckDBPyConnection, backend: LanceDBBackend
) -> None:
    set_documents(con, document("alpha"), document("beta"), document("gamma"), document("delta"))
    embedder = FakeEmbedder()
    _, _, served = refresh(con, backend, embedder, "r1")
    set_documents(con, document("alpha"))
    _, _, blocked = refresh(con, backend, embedder, "r2", policy=IndexPolicy(max_delete_fraction=0.5))
    gate = blocked.gates[DELETE_FRACTION]
    assert not blocked.published and not gate.passed and "3 of 4" in gate.message
    assert backend.count(served.version) == served.count and blocked.upserted == blocked.deleted == 0


def test_a_failing_quality_gate_keeps_the_alias_on_the_served_version(
    con: duckdb.DuckDBPyConnection, backend: LanceDBBackend
) -> None:
    embedder = FakeEmbedder()
    set_documents(con, document("alpha"))
    _, _, served = refresh(con, backend, embedder, "r1")
    seen: list[tuple[str, str | None]] = []

    def regression(candidate: str, current: str | None) -> Gate:
        seen.append((candidate, current))
        return Gate("retrieval_quality_within_tolerance", False, "nDCG@10 dropped")

    _, _, rebuilt = refresh(con, backend, embedder, "r2", full=True, quality_gate=regression)
    assert seen == [(rebuilt.version, served.version)]
    assert not rebuilt.published and backend.resolve_alias(ALIAS) == served.version


def test_version_planning_reuses_the_served_version_resumes_a_build_and_rebuilds_on_request(
    con: duckdb.DuckDBPyConnection, backend: LanceDBBackend
) -> None:
    embedder = FakeEmbedder()
    set_documents(con, document("alpha"))
    _, _, served = refresh(con, backend, embedder, "r1")
    fp = index_fingerprint(CONFIG, embedder.model_id, embedder.dimension, backend.kind)
    assert plan_index_version(con, backend, ALIAS, fp, full=False).name == served.version
    rebuild = plan_index_version(con, backend, ALIAS, fp, full=True)
    assert rebuild.new_version and rebuild.build == 2 and rebuild.served == served.version
    other = plan_index_version(con, backend, ALIAS, "otherfp", full=False)
    assert other.new_version and "otherfp" in other.name
    con.execute(
        "INSERT INTO index_versions (name, alias, fingerprint, build, status) VALUES (?, ?, ?, ?, 'building')",
        [other.name, ALIAS, "otherfp", other.build],
    )
    assert plan_index_version(con, backend, ALIAS, "otherfp", full=False).name == other.name  # resumed


def test_the_ledger_gate_notices_an_index_that_lost_a_chunk(
    con: duckdb.DuckDBPyConnection, backend: LanceDBBackend
) -> None:
    embedder = FakeEmbedder()
    set_documents(con, document("alpha"), document("beta"))
    _, _, served = refresh(con, backend, embedder, "r1")
    live = len(live_chunk_ids(con))
    assert ledger_match_gate(con, backend, served.version, live, embedder.model_id).passed
    backend.delete(served.version, [sorted(live_chunk_ids(con))[0]])
    backend.refresh(served.version)
    gate = ledger_match_gate(con, backend, served.version, live, embedder.model_id)
    assert gate.name == MATCHES_LEDGER and not gate.passed and f"ledger has {live}" in gate.message


def test_the_delete_gate_passes_without_a_served_index(con: duckdb.DuckDBPyConnection) -> None:
    assert delete_fraction_gate(con, None, CONFIG.fingerprint, 0.0).passed


@pytest.mark.parametrize(
    ("failures", "passed", "message"),
    [((), True, "suite: 5 rows passed"), (("a bad", "b bad"), False, "suite: a bad; b bad")],
)
def test_a_gate_built_from_failures_names_them(failures: tuple[str, ...], passed: bool, message: str) -> None:
    gate = Gate.from_failures("suite", 5, failures)
    assert (gate.passed, gate.message, gate.as_dict()) == (passed, message, {"passed": passed, "message": message})
    assert not gate.with_failure("c bad").passed


def test_an_incremental_change_is_invisible_to_readers_until_its_gates_pass(
    con: duckdb.DuckDBPyConnection, backend: LanceDBBackend, tmp_path: Path
) -> None:
    """Regression: in-place incremental writes used to be served before the gates ran."""
    embedder = FakeEmbedder()
    set_documents(con, document("alpha"), document("beta"))
    _, _, served = refresh(con, backend, embedder, "r1")
    reader = LanceDBBackend(tmp_path / "index")
    published = reader.chunk_hashes(served.version)

    def blocked(candidate: str, current: str | None) -> Gate:
        return Gate("retrieval_quality_within_tolerance", False, "nDCG@10 dropped")

    set_documents(con, document("alpha", version="2"), document("beta"), document("gamma"))
    _, _, held = refresh(con, backend, embedder, "r2", quality_gate=blocked)
    assert held.version == served.version and held.upserted > 0 and not held.published
    assert reader.chunk_hashes(served.version) == published and reader.count(served.version) == len(published)
    assert not reader.search_keyword(served.version, "gamma", 5)

    _, _, released = refresh(con, backend, embedder, "r3")
    assert released.published and released.upserted == 0  # the held writes are published as they are
    assert set(reader.chunk_hashes(served.version)) == live_chunk_ids(con)
    assert reader.search_keyword(served.version, "gamma", 5)
    reader.close()
