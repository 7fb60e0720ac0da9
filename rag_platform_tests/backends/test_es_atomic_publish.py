"""Atomic publishing on Elasticsearch, through the enforcing stand-in (``es_recorder``) with the least-privilege
API key of README "Run with Elasticsearch": an in-place refresh writes a clone of the served generation and one
``_aliases`` request publishes it; a run killed or blocked before that changes nothing served; index_sync, the
ledger and rollback see logical version names throughout. First the server rules the design depends on."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from backends.es_recorder import RecordingElasticsearch, serve
from elasticsearch import ApiError
from fakes import FakeEmbedder
from test_sync import ALIAS, document, live_chunk_ids, refresh, set_documents

from rag_platform.backends import BackendError
from rag_platform.backends.elasticsearch import ElasticsearchBackend, ElasticsearchConfig
from rag_platform.gates import Gate
from rag_platform.records import IndexedChunk
from rag_platform.warehouse import SCHEMA

DIM = 4
SERVED = "rag_chunks"
KEY_INDICES = [(["rag_chunks*", f"{ALIAS}*"], ["read", "write", "manage"])]


@pytest.fixture
def stand_in() -> Iterator[tuple[RecordingElasticsearch, str]]:
    rec = RecordingElasticsearch(strict_indexes=True, version="9.2.0")
    rec.add_api_key("platform", [], KEY_INDICES)
    url, stop = serve(rec)
    yield rec, url
    stop()
    unexpected = [v for v in rec.violations if not v.startswith(("GET /:", "GET /_license:"))]
    assert not unexpected, f"the stand-in refused requests a server would refuse: {unexpected}"


def handle(url: str, key: str | None = "platform") -> ElasticsearchBackend:
    """A backend handle, as a separate process (a refresh, the API server) would hold it."""
    config = ElasticsearchConfig.from_env({"RAG_ES_URL": url, "RAG_ES_TIMEOUT_S": "5", "RAG_ES_API_KEY": key or ""})
    return ElasticsearchBackend(config.client(max_retries=0), url_for_messages="Elasticsearch", replicas=1)


def chunk(cid: str, text: str) -> IndexedChunk:
    return IndexedChunk(
        chunk_id=cid,
        document_id=f"doc-{cid}",
        source=f"file:///docs/{cid}.md",
        title="T",
        text=text,
        document_version="v1",
        run_id="run-1",
        vector=[1.0, float(len(text)), 0.0, 0.0],
    )


def publish_first(url: str, name: str = f"{SERVED}-fp-0001") -> str:
    writer = handle(url)
    writer.create_version(name, DIM, {"alias": SERVED, "model": "m", "chunker_fingerprint": "c"})
    writer.upsert(name, [chunk("c1", "alpha one"), chunk("c2", "beta two")])
    writer.refresh(name)
    writer.swap_alias(SERVED, name)
    return name


def checksum(backend: ElasticsearchBackend, alias: str) -> str:
    """What status reports as the served checksum: the served version's chunk hashes, read by a reader."""
    name = backend.resolve_alias(alias)
    assert name is not None
    return hashlib.sha256(repr(sorted(backend.chunk_hashes(name).items())).encode()).hexdigest()


def holders(rec: RecordingElasticsearch, alias: str) -> list[str]:
    return sorted(n for n, s in rec.indexes.items() if alias in s.aliases)


def violations(rec: RecordingElasticsearch) -> list[str]:
    seen = [v for v in rec.violations if not v.startswith(("GET /:", "GET /_license:"))]
    rec.violations.clear()
    return seen


# ---- the server rules ----------------------------------------------------------------------------------


def test_the_stand_in_enforces_clone_block_and_alias_rules(stand_in: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = stand_in
    name = publish_first(url)
    indices = handle(url, key=None).client.indices
    with pytest.raises(ApiError):  # MetadataCreateIndexService.validateResize: the source must be write-blocked
        indices.clone(index=name, target=f"{name}-g1")
    assert "must be read-only to resize index" in violations(rec)[0]
    with pytest.raises(ApiError):  # aliases point at concrete indexes, never at an alias
        indices.update_aliases(actions=[{"add": {"index": SERVED, "alias": "rag_chunks-other"}}])
    assert "matches an alias, specify the corresponding concrete indices" in violations(rec)[0]
    with pytest.raises(ApiError):  # nor may an index be deleted through one
        indices.delete(index=SERVED)
    assert "matches an alias" in violations(rec)[0]
    indices.put_settings(index=name, settings={"index": {"blocks": {"write": True}}})
    indices.clone(index=name, target=f"{name}-g1", settings={"index": {"blocks": {"write": None}}})
    assert rec.indexes[f"{name}-g1"].docs == rec.indexes[name].docs and not rec.indexes[f"{name}-g1"].aliases
    with pytest.raises(ApiError):  # an alias may not take the name of an index that stays
        indices.update_aliases(actions=[{"add": {"index": f"{name}-g1", "alias": name}}])
    assert "an index or data stream exists with the same name as the alias" in violations(rec)[0]
    written = handle(url, key=None).client.bulk(
        operations=[{"index": {"_index": name, "_id": "c3"}}, {"chunk_id": "c3"}]
    )
    [item] = [next(iter(i.values())) for i in written["items"]]
    assert item["status"] == 403 and item["error"]["type"] == "cluster_block_exception", "a write-blocked index"
    # remove_index runs before the other actions: the alias takes the deleted index's name in the same request.
    indices.update_aliases(
        actions=[
            {"add": {"index": f"{name}-g1", "alias": SERVED}},
            {"add": {"index": f"{name}-g1", "alias": name}},
            {"remove_index": {"index": name}},
        ]
    )
    assert holders(rec, SERVED) == holders(rec, name) == [f"{name}-g1"] and name not in rec.indexes


# ---- the backend ---------------------------------------------------------------------------------------


def test_an_in_place_write_goes_to_a_clone_and_one_aliases_request_publishes_it(
    stand_in: tuple[RecordingElasticsearch, str],
) -> None:
    rec, url = stand_in
    name = publish_first(url)
    reader = handle(url)
    served = checksum(reader, SERVED)
    writer = handle(url)
    writer.open_for_writes(name)
    assert not rec.of("PUT", r"/.*/_clone/.*"), "opening clones nothing: a refresh without changes stays free"
    writer.upsert(name, [chunk("c3", "gamma three")])
    writer.delete(name, ["c1"])
    writer.refresh(name)
    staging = f"{name}-g1"
    [clone] = rec.of("PUT", f"/{name}/_clone/{staging}")
    assert clone.json["settings"] == {"index": {"number_of_replicas": 1, "blocks": {"write": None}}}
    blocks = [
        r.json["index"]["blocks"]["write"] for r in rec.of("PUT", f"/{name}/_settings") if "blocks" in r.raw.decode()
    ]
    assert blocks == [True, None], "the source is write-blocked for the clone, then released"
    assert not rec.indexes[name].settings.get("blocks.write") and not rec.indexes[staging].settings.get("blocks.write")

    # Nothing of it is served: not through the alias, not through the version name, to no other handle.
    assert checksum(reader, SERVED) == served and reader.count(name) == 2
    assert not reader.search_keyword(SERVED, "gamma", 3) and not reader.get(name, ["c3"])
    assert sorted(writer.chunk_hashes(name)) == ["c2", "c3"], "the writer reads its own writes"
    assert [v.name for v in reader.list_versions(SERVED)] == [name], "a staging index is no version of its own"

    before = len(rec.of("POST", "/_aliases"))
    writer.swap_alias(SERVED, name)
    [swap] = rec.of("POST", "/_aliases")[before:]
    assert swap.json["actions"] == [
        {"add": {"index": staging, "alias": SERVED}},
        {"add": {"index": staging, "alias": name}},
        {"remove_index": {"index": name}},
    ]
    assert holders(rec, SERVED) == holders(rec, name) == [staging] and name not in rec.indexes
    assert reader.resolve_alias(SERVED) == name, "readers and the ledger keep the logical version name"
    assert sorted(reader.chunk_hashes(name)) == ["c2", "c3"] and checksum(reader, SERVED) != served
    assert [h.chunk_id for h in reader.search_keyword(SERVED, "gamma", 3)] == ["c3"]

    # The next in-place refresh moves on to the next generation, every alias carried over, the old one deleted.
    writer.upsert(name, [chunk("c4", "delta four")])
    writer.refresh(name)
    writer.swap_alias(SERVED, name)
    assert holders(rec, SERVED) == holders(rec, name) == [f"{name}-g2"] and sorted(rec.indexes) == [f"{name}-g2"]
    assert [(v.name, v.count, v.served) for v in reader.list_versions(SERVED)] == [(name, 3, True)]


def test_a_killed_writer_leaves_a_staging_index_the_next_writer_continues(
    stand_in: tuple[RecordingElasticsearch, str],
) -> None:
    rec, url = stand_in
    name = publish_first(url)
    reader = handle(url)
    served = checksum(reader, SERVED)
    killed = handle(url)
    killed.upsert(name, [chunk("c3", "gamma three")])
    killed.refresh(name)
    del killed  # the process dies before its gates: no swap
    assert checksum(reader, SERVED) == served and sorted(rec.indexes) == [name, f"{name}-g1"]

    resumed = handle(url)
    resumed.open_for_writes(name)
    assert sorted(resumed.chunk_hashes(name)) == ["c1", "c2", "c3"], "the killed run's acknowledged writes count"
    resumed.upsert(name, [chunk("c4", "delta four")])
    resumed.refresh(name)
    assert len(rec.of("PUT", r"/.*/_clone/.*")) == 1, "the staging index was continued, not cloned again"
    assert checksum(reader, SERVED) == served
    resumed.swap_alias(SERVED, name)
    assert sorted(reader.chunk_hashes(name)) == ["c1", "c2", "c3", "c4"] and sorted(rec.indexes) == [f"{name}-g1"]


def test_leftovers_of_interrupted_runs_are_deleted_by_name_and_a_stale_block_lifted(
    stand_in: tuple[RecordingElasticsearch, str],
) -> None:
    rec, url = stand_in
    name = publish_first(url)
    writer = handle(url)
    writer.upsert(name, [chunk("c3", "gamma three")])
    writer.swap_alias(SERVED, name)  # now generation 1 serves
    indices = handle(url, key=None).client.indices
    # A leftover older generation, two staging copies (the older one of a run killed earlier), and a block a run
    # killed between blocking and cloning left on the served generation.
    for leftover in (f"{name}-g0", f"{name}-g2", f"{name}-g3"):
        indices.put_settings(index=f"{name}-g1", settings={"index": {"blocks": {"write": True}}})
        indices.clone(index=f"{name}-g1", target=leftover, settings={"index": {"blocks": {"write": None}}})
    next_writer = handle(url)
    next_writer.open_for_writes(name)
    assert sorted(rec.indexes) == [f"{name}-g1", f"{name}-g3"], "the newest staging copy is continued"
    [delete] = [r for r in rec.of("DELETE", r"/.*") if "-g0" in r.path]
    assert delete.path == f"/{name}-g0,{name}-g2", "concrete names only (destructive_requires_name)"
    next_writer.upsert(name, [chunk("c4", "delta four")])
    next_writer.swap_alias(SERVED, name)
    assert sorted(rec.indexes) == [f"{name}-g3"] and holders(rec, SERVED) == [f"{name}-g3"]
    # The block on a served generation does not stop the next clone, which lifts it again.
    indices.put_settings(index=f"{name}-g3", settings={"index": {"blocks": {"write": True}}})
    last = handle(url)
    last.upsert(name, [chunk("c5", "epsilon five")])
    assert not rec.indexes[f"{name}-g3"].settings.get("blocks.write") and f"{name}-g4" in rec.indexes


def test_rollback_and_drop_after_in_place_publishing(stand_in: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = stand_in
    first = publish_first(url)
    backend = handle(url)
    backend.upsert(first, [chunk("c3", "gamma three")])
    backend.refresh(first)
    backend.swap_alias(SERVED, first)
    second = publish_first(url, f"{SERVED}-fp-0002")
    assert backend.resolve_alias(SERVED) == second
    backend.swap_alias(SERVED, first)  # rollback to the version that is an alias over its generation
    assert holders(rec, SERVED) == [f"{first}-g1"] and backend.resolve_alias(SERVED) == first
    assert {v.name: (v.count, v.served) for v in backend.list_versions(SERVED)} == {
        first: (3, True),
        second: (2, False),
    }
    with pytest.raises(BackendError, match="served"):
        backend.drop(first)
    # A version with a staging copy (a killed run's) is dropped whole, by concrete names.
    handle(url).upsert(second, [chunk("c9", "orphan")])
    assert f"{second}-g1" not in rec.indexes, "an unserved version is written directly"
    backend.swap_alias(SERVED, second)
    handle(url).upsert(second, [chunk("c9", "orphan")])
    backend.swap_alias(SERVED, first)
    assert sorted(rec.indexes) == [f"{first}-g1", second, f"{second}-g1"]
    backend.drop(second)
    assert sorted(rec.indexes) == [f"{first}-g1"]
    with pytest.raises(BackendError, match="-g<digits>"):
        backend.create_version(f"{SERVED}-fp-g7", DIM, {})


# ---- index_sync on Elasticsearch -------------------------------------------------------------------------


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


class Killed(Exception):
    """Raised where a fault would SIGKILL the process: nothing after it runs."""


def test_gate_failures_and_kills_of_in_place_refreshes_change_nothing_served(
    stand_in: tuple[RecordingElasticsearch, str], con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec, url = stand_in
    embedder = FakeEmbedder(dimension=DIM)
    reader = handle(url)
    set_documents(con, document("alpha"), document("beta"))
    _, _, first = refresh(con, handle(url), embedder, "r1")  # type: ignore[arg-type]
    assert first.published
    served = checksum(reader, ALIAS)

    def blocked(candidate: str, current: str | None) -> Gate:
        return Gate("retrieval_quality_within_tolerance", False, "nDCG@10 dropped")

    set_documents(con, document("alpha", version="2"), document("beta"), document("gamma"))
    _, _, held = refresh(con, handle(url), embedder, "r2", quality_gate=blocked)  # type: ignore[arg-type]
    assert held.version == first.version and held.upserted > 0 and not held.published
    assert checksum(reader, ALIAS) == served and not reader.search_keyword(ALIAS, "gamma", 5)

    calls: dict[str, int] = {"index_write": 0}

    def kill_at_second_batch(stage: str) -> None:
        calls[stage] = calls.get(stage, 0) + 1
        if stage == "index_write" and calls[stage] == 2:
            raise Killed(stage)

    set_documents(con, document("alpha", version="3"), document("gamma"), document("delta"))
    monkeypatch.setattr("rag_platform.index_sync.faults.checkpoint", kill_at_second_batch)
    with pytest.raises(Killed):
        refresh(con, handle(url), embedder, "r3", policy=_one_per_batch())  # type: ignore[arg-type]
    monkeypatch.undo()
    assert checksum(reader, ALIAS) == served, "a killed in-place refresh changed the served checksum"

    _, _, released = refresh(con, handle(url), embedder, "r4")  # type: ignore[arg-type]
    assert released.published and released.version == first.version
    assert set(reader.chunk_hashes(first.version)) == live_chunk_ids(con)
    assert reader.search_keyword(ALIAS, "delta", 5) and checksum(reader, ALIAS) != served
    assert [n for n in rec.indexes if ALIAS in n] == holders(rec, ALIAS), "no staging index left behind"


def _one_per_batch() -> Any:
    from rag_platform.index_sync import IndexPolicy

    return IndexPolicy(write_batch=1, max_delete_fraction=1.0)


def test_a_version_left_write_blocked_by_a_kill_is_written_directly_once_unserved(
    stand_in: tuple[RecordingElasticsearch, str],
) -> None:
    rec, url = stand_in
    first = publish_first(url)
    # Killed between blocking the served index and cloning it; then another version was published.
    handle(url, key=None).client.indices.put_settings(index=first, settings={"index": {"blocks": {"write": True}}})
    second = publish_first(url, f"{SERVED}-fp-0002")
    writer = handle(url)
    writer.upsert(first, [chunk("c3", "gamma three")])  # a kept version resumed: no alias serves it
    writer.refresh(first)
    assert sorted(writer.chunk_hashes(first)) == ["c1", "c2", "c3"] and not rec.of("PUT", r"/.*/_clone/.*")
    assert holders(rec, SERVED) == [second]
