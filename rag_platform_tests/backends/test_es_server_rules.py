"""The Elasticsearch backend against the server's rules, enforced by the stand-in (``es_recorder``).

Each finding of the 9.x review (shared/reviews/elasticsearch-9.md) has a test here: first that the stand-in
refuses what the server refuses (so the rule could catch the defect), then that the backend's requests pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from backends.contract import delete_prefixed
from backends.es_recorder import RecordingElasticsearch, serve
from backends.es_spec import load_spec
from elasticsearch import ApiError

from rag_platform.backends import BackendError, IndexMissing
from rag_platform.backends.elasticsearch import (
    ElasticsearchBackend,
    ElasticsearchConfig,
    Forbidden,
    mapping,
)
from rag_platform.config import ConfigError, load_settings
from rag_platform.records import IndexedChunk, sha256_hex

DIM = 4
ALIAS = "rag_chunks"
# The least-privilege API key of README "Run with Elasticsearch": no cluster privilege, and on the platform's
# own index names only read (search, count, scroll), write (bulk) and manage (create, settings, refresh,
# aliases, mappings, delete).
PLATFORM_KEY_INDICES = [(["rag_chunks*"], ["read", "write", "manage"])]


@pytest.fixture
def stand_in() -> Iterator[tuple[RecordingElasticsearch, str]]:
    rec = RecordingElasticsearch()
    url, stop = serve(rec)
    yield rec, url
    stop()
    assert not rec.violations, f"unexpected refusals: {rec.violations}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def backend_for(url: str, clock: Clock | None = None, **options: Any) -> ElasticsearchBackend:
    env = {"RAG_ES_URL": url, "RAG_ES_TIMEOUT_S": "5", **options.pop("env", {})}
    config = ElasticsearchConfig.from_env(env)
    return ElasticsearchBackend(
        config.client(max_retries=0),
        url_for_messages=f"Elasticsearch at {config.safe_url}",
        index_prefix=config.index_prefix,
        initial_backoff_s=0.01,
        clock=clock or Clock(),
        **options,
    )


def chunk(cid: str, text: str = "alpha beta", vector: list[float] | None = None) -> IndexedChunk:
    return IndexedChunk(
        chunk_id=cid,
        document_id="doc-" + cid,
        source=f"file:///docs/{cid}.md",
        title="T",
        text=text,
        document_version="v1",
        run_id="run-1",
        vector=vector or [1.0, 0.0, 0.0, 0.0],
    )


def build(backend: ElasticsearchBackend, name: str, n: int = 3) -> list[IndexedChunk]:
    chunks = [chunk(f"c{i}", f"text {i}", [1.0, float(i), 0.0, 0.0]) for i in range(n)]
    backend.create_version(name, DIM, {"alias": ALIAS, "model": "m", "chunker_fingerprint": "c"})
    backend.upsert(name, chunks)
    backend.refresh(name)
    return chunks


def refused(rec: RecordingElasticsearch) -> list[str]:
    """The refusals so far, cleared: the test has looked at them."""
    seen = list(rec.violations)
    rec.violations.clear()
    return seen


@contextmanager
def refusal(rec: RecordingElasticsearch, fragment: str) -> Iterator[None]:
    """The block fails with an API error, and the stand-in's refusal (the server's reason) names ``fragment``."""
    with pytest.raises(ApiError):
        yield
    assert any(fragment in v for v in refused(rec)), rec.requests[-1].path


# ---- the specification ----------------------------------------------------------------------------------


def test_requests_are_validated_against_the_api_specification(stand_in: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = stand_in
    if rec.spec is None:
        pytest.skip("the Elasticsearch API specification (npm @elastic/request-converter) could not be installed")
    client = backend_for(url).client
    json_body = {"content-type": "application/json"}
    with refusal(rec, "[knn] unknown field [bogus]"):
        client.perform_request(
            "POST", "/idx/_search", body={"knn": {"field": "v", "k": 3, "bogus": 1}}, headers=json_body
        )
    with refusal(rec, "unrecognized parameter: [allow_no_indices]"):
        client.perform_request("DELETE", "/idx/_alias/x", params={"allow_no_indices": "true"})
    vector = {"type": "dense_vector", "index_options": {"type": "ivf"}}
    with refusal(rec, "'ivf' is not one of"):
        client.perform_request("PUT", "/idx", body={"mappings": {"properties": {"v": vector}}}, headers=json_body)
    with refusal(rec, "[size] expected number"):
        client.search(index="idx", size="ten")  # type: ignore[arg-type]


def test_the_specification_is_the_9_x_one() -> None:
    spec = load_spec()
    if spec is None:
        pytest.skip("the Elasticsearch API specification could not be installed (npm unreachable)")
    found = spec.endpoint("POST", "/idx/_search")
    assert found is not None and found[0].name == "search"
    # 9.x features the backend relies on are in it: kNN rescoring and weighted RRF components.
    assert not spec.check_value({"field": "v", "k": 1, "rescore_vector": {"oversample": 2.0}}, ("_types", "KnnSearch"))
    assert not spec.check_value({"retriever": {"standard": {}}, "weight": 0.5}, ("_types", "RRFRetrieverComponent"))


# ---- finding 1: RRF window >= size ---------------------------------------------------------------------


def test_stand_in_refuses_a_page_larger_than_the_rrf_window(stand_in: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = stand_in
    rec.license_type = "enterprise"
    client = backend_for(url).client
    knn = {"field": "vector", "query_vector": [1.0, 0, 0, 0], "k": 10, "num_candidates": 10}
    with refusal(rec, "[rank_window_size: 10] be greater than or equal to [size: 18]"):
        # What the backend used to send for the conformance hybrid case (k=2, candidates=10): size k + 16.
        client.search(index="idx", size=18, retriever={"rrf": {"retrievers": [{"knn": knn}], "rank_window_size": 10}})


@pytest.mark.parametrize(("k", "candidates"), [(2, 10), (50, 50), (40, 50), (5, 100)])
def test_server_rrf_keeps_the_page_inside_the_window(
    stand_in: tuple[RecordingElasticsearch, str], k: int, candidates: int
) -> None:
    rec, url = stand_in
    rec.license_type, rec.version = "enterprise", "9.2.0"
    backend_for(url).search_hybrid("idx", "alpha", [1.0, 0, 0, 0], k, candidates=candidates, weights=(1.0, 0.2))
    [search] = rec.of("POST", "/idx/_search")
    rrf = search.json["retriever"]["rrf"]
    assert k <= search.json["size"] <= rrf["rank_window_size"] == max(k, candidates)


def test_rank_constant_below_one_is_refused_before_any_request(stand_in: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = stand_in
    rec.license_type = "trial"
    with pytest.raises(ValueError, match="rank_constant"):
        backend_for(url).search_hybrid("idx", "alpha", [1.0, 0, 0, 0], 3, rrf_k=0)
    assert not rec.of("POST", "/idx/_search")


# ---- finding 2: license level, status, expiry -------------------------------------------------------------


def test_platinum_gets_a_403_for_rrf_so_the_backend_fuses_client_side(
    stand_in: tuple[RecordingElasticsearch, str],
) -> None:
    rec, url = stand_in
    rec.license_type = "platinum"
    client = backend_for(url).client
    knn = {"field": "vector", "query_vector": [1.0, 0, 0, 0], "k": 10, "num_candidates": 10}
    with refusal(rec, "non-compliant for [Reciprocal Rank Fusion (RRF)]"):
        client.search(index="idx", size=5, retriever={"rrf": {"retrievers": [{"knn": knn}], "rank_window_size": 10}})
    backend_for(url).search_hybrid("idx", "alpha", [1.0, 0, 0, 0], 5)
    searches = [r.json for r in rec.of("POST", "/idx/_search")[1:]]
    assert len(searches) == 2 and all("retriever" not in body for body in searches)


@pytest.mark.parametrize(("license_type", "status"), [("trial", "expired"), ("enterprise", "invalid")])
def test_an_inactive_license_grants_no_rrf(
    stand_in: tuple[RecordingElasticsearch, str], license_type: str, status: str
) -> None:
    rec, url = stand_in
    rec.license_type, rec.license_status = license_type, status
    assert not backend_for(url).server_side_rrf((1.0, 1.0))
    rec.license_status = "active"
    assert backend_for(url).server_side_rrf((1.0, 1.0))


def test_the_license_is_asked_again_after_it_expires_from_the_cache(
    stand_in: tuple[RecordingElasticsearch, str],
) -> None:
    rec, url = stand_in
    rec.license_type = "trial"
    clock = Clock()
    backend = backend_for(url, clock, license_ttl_s=60.0)
    assert backend.server_side_rrf((1.0, 1.0))
    rec.license_type = "basic"  # the trial ended on the server
    clock.now += 30
    assert backend.server_side_rrf((1.0, 1.0)), "within the TTL the cached answer stands"
    clock.now += 31
    assert not backend.server_side_rrf((1.0, 1.0))
    assert len(rec.of("GET", "/_license")) == 2


def test_a_license_expiring_sooner_than_the_ttl_is_not_trusted_past_its_expiry(
    stand_in: tuple[RecordingElasticsearch, str],
) -> None:
    rec, url = stand_in
    rec.script(
        "GET", "/_license", (200, {"license": {"type": "trial", "status": "active", "expiry_date_in_millis": 0}})
    )
    assert not backend_for(url).server_side_rrf((1.0, 1.0))


def test_rrf_refused_mid_ttl_falls_back_to_client_fusion_and_warns_once(
    stand_in: tuple[RecordingElasticsearch, str], caplog: pytest.LogCaptureFixture
) -> None:
    rec, url = stand_in
    rec.license_type = "enterprise"
    backend = backend_for(url)
    assert backend.server_side_rrf((1.0, 1.0))
    rec.license_type = "basic"  # downgraded while the cached answer still says enterprise
    with caplog.at_level(logging.WARNING):
        backend.search_hybrid("idx", "alpha", [1.0, 0, 0, 0], 3)
    assert any("non-compliant" in v for v in refused(rec))
    last_two = [r.json for r in rec.of("POST", "/idx/_search")[-2:]]
    assert all("retriever" not in body for body in last_two)
    assert sum("RRF retriever was refused" in r.message for r in caplog.records) == 1
    assert not backend.server_side_rrf((1.0, 1.0)), "the refusal made the backend ask the license again"


# ---- finding 3: privileges ------------------------------------------------------------------------------


def test_a_key_without_monitor_is_refused_info_and_license(stand_in: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = stand_in
    rec.add_api_key("platform", [], PLATFORM_KEY_INDICES)
    client = backend_for(url, env={"RAG_ES_API_KEY": "platform"}).client
    for call in (client.info, client.license.get):
        with pytest.raises(Exception, match="403"):
            call()
    assert len(refused(rec)) == 2


def test_least_privilege_key_builds_searches_hybrid_and_passes_the_consistency_checks(
    stand_in: tuple[RecordingElasticsearch, str], caplog: pytest.LogCaptureFixture
) -> None:
    rec, url = stand_in
    rec.license_type, rec.version = "enterprise", "9.2.0"
    rec.add_api_key("platform", [], PLATFORM_KEY_INDICES)
    backend = backend_for(url, env={"RAG_ES_API_KEY": "platform"})
    name = f"{ALIAS}-fp-0001"
    with caplog.at_level(logging.WARNING):
        chunks = build(backend, name)
        backend.delete(name, ["c2"])
        backend.refresh(name)
        # What the consistency gate reads: the count and a round trip of text and vector.
        assert backend.count(name) == 2
        got = backend.get(name, ["c0", "c1"])
        assert [(c.text, c.vector) for c in got] == [(c.text, c.vector) for c in chunks[:2]]
        assert backend.chunk_hashes(name) == {c.chunk_id: sha256_hex(c.text) for c in chunks[:2]}
        backend.swap_alias(ALIAS, name)
        assert backend.resolve_alias(ALIAS) == name
        assert [v.name for v in backend.list_versions(ALIAS)] == [name]
        for _ in range(2):
            hits = backend.search_hybrid(ALIAS, "text", [1.0, 0, 0, 0], 2)
            assert {h.chunk_id for h in hits} <= {"c0", "c1"} and hits
    info_and_license = [v for v in refused(rec) if v.startswith(("GET /:", "GET /_license"))]
    assert len(info_and_license) == 2, "server facts are asked once, then cached"
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("license" in w for w in warnings) == 1 and sum("server version" in w for w in warnings) == 1
    # Without the license the backend cannot know RRF is allowed: every hybrid search fused client-side.
    assert all("retriever" not in r.json for r in rec.of("POST", f"/{ALIAS}/_search"))


def test_a_key_missing_a_needed_privilege_fails_with_a_clear_403(stand_in: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = stand_in
    rec.add_api_key("read-only", [], [(["rag_chunks*"], ["read"])])
    with pytest.raises(Forbidden, match=r"refused the request \(403\)"):
        backend_for(url, env={"RAG_ES_API_KEY": "read-only"}).create_version(f"{ALIAS}-x-0001", DIM, {})
    assert "index privileges [view_index_metadata" in refused(rec)[0]


@pytest.mark.parametrize(("version", "flag_sent"), [("9.1.5", False), ("9.2.1", True)])
def test_get_without_the_server_version_finds_out_whether_exclude_vectors_is_known(
    stand_in: tuple[RecordingElasticsearch, str], version: str, flag_sent: bool
) -> None:
    rec, url = stand_in
    rec.version = version
    rec.add_api_key("platform", [], PLATFORM_KEY_INDICES)
    backend = backend_for(url, env={"RAG_ES_API_KEY": "platform"})
    name = f"{ALIAS}-fp-0001"
    build(backend, name)
    assert [c.chunk_id for c in backend.get(name, ["c1"])] == ["c1"]
    assert [c.chunk_id for c in backend.get(name, ["c2"])] == ["c2"]
    refused(rec)
    flags = ["exclude_vectors" in r.json["_source"] for r in rec.of("POST", f"/{name}/_search")]
    # 9.1 refuses the flag once, and the backend stops sending it; 9.2 accepts it.
    assert flags == ([True, False, False] if not flag_sent else [True, True])


# ---- finding 4: conformance teardown ----------------------------------------------------------------------


def test_wildcard_deletes_are_refused_and_teardown_deletes_concrete_names(
    stand_in: tuple[RecordingElasticsearch, str],
) -> None:
    rec, url = stand_in
    prefix = "rag-test-1234abcd-"
    backend = backend_for(url, env={"RAG_ES_INDEX_PREFIX": prefix})
    build(backend, "conf-v1")
    build(backend, "conf-served-0001")
    backend.swap_alias("conf-served", "conf-served-0001")
    rec.indexes["unrelated"] = rec.indexes[f"{prefix}conf-v1"].__class__({}, {})
    with pytest.raises(TypeError):  # the 9.5 client has no such keywords for delete_alias
        backend.client.indices.delete_alias(
            index=f"{prefix}*", name="*", ignore_unavailable=True, allow_no_indices=True
        )  # type: ignore[call-arg]
    with refusal(rec, "Wildcard expressions or all indices are not allowed"):
        backend.client.indices.delete(index=f"{prefix}*", ignore_unavailable=True, allow_no_indices=True)
    delete_prefixed(backend.client, prefix)
    assert sorted(rec.indexes) == ["unrelated"]
    delete_prefixed(backend.client, prefix)  # nothing left: a no-op, not an error


# ---- refresh before reading a resumed version ---------------------------------------------------------------


def test_a_resumed_version_is_refreshed_before_it_is_counted_or_scanned(
    stand_in: tuple[RecordingElasticsearch, str],
) -> None:
    rec, url = stand_in
    name = f"{ALIAS}-fp-0001"
    crashed = backend_for(url)
    crashed.create_version(name, DIM, {"alias": ALIAS})
    crashed.upsert(name, [chunk("c1"), chunk("c2")])  # then the process died before refresh()
    assert rec.indexes[name].settings["refresh_interval"] == "-1"
    raw = crashed.client.count(index=name)["count"]
    assert raw == 0, "the stand-in shows only refreshed documents to count and search, as the server does"
    resumed = backend_for(url)
    assert resumed.count(name) == 2
    assert sorted(resumed.chunk_hashes(name)) == ["c1", "c2"]
    resumed.upsert(name, [chunk("c3")])
    assert resumed.count(name) == 3, "a write by this backend makes the next read refresh again"
    assert len(rec.of("POST", f"/{name}/_refresh")) == 2


# ---- replicas and shards (issue 16) ---------------------------------------------------------------------


def test_replicas_are_set_after_the_build_and_before_the_alias_moves(
    stand_in: tuple[RecordingElasticsearch, str],
) -> None:
    rec, url = stand_in
    backend = backend_for(url, shards=2, replicas=2)
    name = f"{ALIAS}-fp-0001"
    build(backend, name)
    backend.swap_alias(ALIAS, name)
    [create] = rec.of("PUT", f"/{name}")
    assert create.json["settings"] == {"number_of_shards": 2, "number_of_replicas": 0, "refresh_interval": "-1"}
    [settings] = rec.of("PUT", f"/{name}/_settings")
    assert settings.json == {"index": {"refresh_interval": None, "number_of_replicas": 2}}
    order = [r.path for r in rec.requests]
    assert order.index(f"/{name}/_settings") < order.index("/_aliases")
    assert rec.indexes[name].settings == {"number_of_shards": 2, "number_of_replicas": 2}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("SHARDS", "0", "index.shards"),
        ("REPLICAS", "-1", "index.replicas"),
        ("NUM_CANDIDATES", "10001", "index.num_candidates"),
        ("NUM_CANDIDATES", "0", "index.num_candidates"),
        ("RRF_K", "0", "index.rrf_k"),
    ],
)
def test_index_settings_are_validated(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, key: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"RAG_PLATFORM__INDEX__{key}", value)
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path)


def test_settings_reach_the_backend(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_PLATFORM__INDEX__SHARDS", "3")
    monkeypatch.setenv("RAG_PLATFORM__INDEX__REPLICAS", "0")
    backend = ElasticsearchBackend.from_env(load_settings(tmp_path), {"RAG_ES_URL": "http://127.0.0.1:9"})
    assert (backend.shards, backend.replicas) == (3, 0)
    monkeypatch.delenv("RAG_PLATFORM__INDEX__SHARDS")
    monkeypatch.delenv("RAG_PLATFORM__INDEX__REPLICAS")
    assert load_settings(tmp_path / "defaults").index.replicas == 1


# ---- kNN bounds and quantized scores -------------------------------------------------------------------------


def test_stand_in_enforces_num_candidates_bounds(stand_in: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = stand_in
    client = backend_for(url).client
    for k, candidates, reason in ((20, 10, "less than [k]"), (5, 10_001, "cannot exceed [10000]")):
        with refusal(rec, reason):
            client.search(
                index="idx", knn={"field": "vector", "query_vector": [1.0], "k": k, "num_candidates": candidates}
            )


def test_large_k_stays_within_the_servers_bounds(stand_in: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = stand_in
    backend_for(url, num_candidates=10_000).search_dense("idx", [1.0, 0, 0, 0], 9_995)
    [search] = rec.of("POST", "/idx/_search")
    knn = search.json["knn"]
    assert knn["k"] <= knn["num_candidates"] <= 10_000 and search.json["size"] <= 10_000
    with pytest.raises(BackendError, match="num_candidates"):
        backend_for(url, num_candidates=20_000)


@pytest.mark.parametrize(("options", "rescored"), [("int8_hnsw", True), ("bbq_hnsw", True), ("hnsw", False)])
def test_quantized_vectors_are_rescored_so_scores_are_cosines(
    stand_in: tuple[RecordingElasticsearch, str], options: str, rescored: bool
) -> None:
    rec, url = stand_in
    backend_for(url, index_options=options).search_dense("idx", [1.0, 0, 0, 0], 3)
    [search] = rec.of("POST", "/idx/_search")
    assert ("rescore_vector" in search.json["knn"]) is rescored


# ---- bbq dimensions -------------------------------------------------------------------------------------


def test_bbq_needs_64_dimensions(stand_in: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = stand_in
    backend = backend_for(url)
    vector = {"type": "dense_vector", "dims": 32, "index_options": {"type": "bbq_hnsw"}}
    with refusal(rec, "does not support dimensions fewer than 64"):
        backend.client.indices.create(index="raw", mappings={"properties": {"vector": vector}})
    with pytest.raises(BackendError, match="at least 64 dimensions"):
        backend_for(url, index_options="bbq_flat").create_version("small", 32, {})
    assert not rec.of("PUT", "/small")
    backend_for(url, index_options="bbq_hnsw").create_version("wide", 64, {})
    assert mapping(64, "bbq_hnsw", {})["properties"]["vector"]["index_options"] == {"type": "bbq_hnsw"}


# ---- an alias moved by another process ------------------------------------------------------------------


@pytest.mark.parametrize("stale_holder_dropped", [False, True])
def test_an_alias_moved_between_read_and_write_ends_on_the_new_version_alone(
    stand_in: tuple[RecordingElasticsearch, str], stale_holder_dropped: bool
) -> None:
    rec, url = stand_in
    backend = backend_for(url)
    for name in ("rag_chunks-a-0001", "rag_chunks-b-0002", "rag_chunks-c-0003"):
        build(backend, name, 1)
    backend.swap_alias(ALIAS, "rag_chunks-a-0001")
    # Another process publishes b-0002 (and maybe drops a-0001) right after this process read the alias.
    rec.script("GET", "/_alias/rag_chunks", (200, {"rag_chunks-a-0001": {"aliases": {ALIAS: {}}}}))
    backend.client.indices.update_aliases(
        actions=[
            {"remove": {"index": "rag_chunks-a-0001", "alias": ALIAS}},
            {"add": {"index": "rag_chunks-b-0002", "alias": ALIAS}},
        ]
    )
    if stale_holder_dropped:
        backend.client.indices.delete(index="rag_chunks-a-0001")
    backend.swap_alias(ALIAS, "rag_chunks-c-0003")
    assert {n for n, s in rec.indexes.items() if ALIAS in s.aliases} == {"rag_chunks-c-0003"}
    with pytest.raises(IndexMissing):
        backend.swap_alias(ALIAS, "rag_chunks-absent-0004")


def test_stand_in_skips_removing_an_absent_alias_as_the_server_does(
    stand_in: tuple[RecordingElasticsearch, str],
) -> None:
    rec, url = stand_in
    backend = backend_for(url)
    build(backend, "rag_chunks-a-0001", 1)
    build(backend, "rag_chunks-b-0002", 1)
    backend.client.indices.update_aliases(actions=[{"add": {"index": "rag_chunks-b-0002", "alias": ALIAS}}])
    # A stale remove is skipped silently: the alias would end on both indexes without the check afterwards.
    backend.client.indices.update_aliases(
        actions=[
            {"remove": {"index": "rag_chunks-a-0001", "alias": ALIAS}},
            {"add": {"index": "rag_chunks-a-0001", "alias": ALIAS}},
        ]
    )
    assert {n for n, s in rec.indexes.items() if ALIAS in s.aliases} == {"rag_chunks-a-0001", "rag_chunks-b-0002"}


# ---- get() batches ---------------------------------------------------------------------------------------


def test_get_batches_stay_within_the_result_window(stand_in: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = stand_in
    backend_for(url, bulk_chunk_size=20_000).get("idx", [f"c{i:05d}" for i in range(10_001)])
    sizes = [len(r.json["query"]["ids"]["values"]) for r in rec.of("POST", "/idx/_search")]
    assert sizes == [10_000, 1]


# ---- strict mapping and vector dimensions ------------------------------------------------------------------


def test_stand_in_applies_the_strict_mapping_to_documents(stand_in: tuple[RecordingElasticsearch, str]) -> None:
    _, url = stand_in
    backend = backend_for(url)
    backend.create_version("strict", DIM, {"model": "m"})
    with pytest.raises(BackendError, match="different number of dimensions"):
        backend.upsert("strict", [chunk("c1", vector=[1.0, 0.0])])


def test_fields_newer_than_the_server_are_unknown_to_it(stand_in: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = stand_in
    if rec.spec is None:
        pytest.skip("the Elasticsearch API specification could not be installed")
    knn = {"field": "vector", "query_vector": [1.0], "k": 1, "num_candidates": 5, "visit_percentage": 10.0}
    with refusal(rec, "unknown field [visit_percentage] (added in 9.2)"):  # the specification's availability
        backend_for(url).client.search(index="idx", knn=knn)
    rec.version = "9.2.0"
    backend_for(url).client.search(index="idx", knn=knn)
