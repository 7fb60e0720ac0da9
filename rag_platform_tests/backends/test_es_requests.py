"""Request contracts of the Elasticsearch backend, checked through the real client's HTTP transport.

Every request goes over HTTP to a stand-in on 127.0.0.1 (``es_recorder``) that refuses what a 9.x server would
refuse (the API specification and the reference's rules); bodies are compared with the request formats of
Elasticsearch's REST reference (create index, bulk, kNN search, RRF retriever, aliases), and recorded error
responses (429, bulk item failures, missing index) drive the error handling. No test may leave a refusal
unexamined: the fixture fails a test whose requests the stand-in refused unless the test cleared them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from backends.es_recorder import RecordingElasticsearch, bulk_response, serve

from rag_platform.backends import BackendError, BackendUnavailable, BulkWriteError, IndexMissing
from rag_platform.backends.elasticsearch import ElasticsearchBackend, ElasticsearchConfig, mapping
from rag_platform.records import ChunkMetadata, IndexedChunk

DIM = 4


@pytest.fixture
def recorder() -> Iterator[tuple[RecordingElasticsearch, str]]:
    rec = RecordingElasticsearch()
    url, stop = serve(rec)
    yield rec, url
    stop()
    assert not rec.violations, f"the stand-in refused requests a server would refuse: {rec.violations}"


def backend_for(url: str, **env: str) -> ElasticsearchBackend:
    config = ElasticsearchConfig.from_env({"RAG_ES_URL": url, "RAG_ES_TIMEOUT_S": "5", **env})
    return ElasticsearchBackend(
        config.client(max_retries=2),
        url_for_messages=f"Elasticsearch at {config.safe_url}",
        index_prefix=config.index_prefix,
        initial_backoff_s=0.01,
    )


def chunk(cid: str, text: str = "alpha beta") -> IndexedChunk:
    return IndexedChunk(
        chunk_id=cid,
        document_id="d" * 32,
        source="file:///docs/a.md",
        title="A",
        text=text,
        document_version="v" * 64,
        run_id="run-1",
        vector=[0.5, 0.5, 0.5, 0.5],
    )


def hit(cid: str, score: float) -> dict[str, object]:
    source = {
        "chunk_id": cid,
        "document_id": "d" * 32,
        "source": "s",
        "title": "t",
        "text": "x",
        "heading_path": "",
        "document_version": "v",
        "run_id": "r",
    }
    return {"_index": "i", "_id": cid, "_score": score, "_source": source}


def test_create_version_sends_the_documented_mapping(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    backend = backend_for(url)
    backend.create_version("rag_chunks-abc-0001", DIM, {"alias": "rag_chunks", "model": "m"})
    [put] = rec.of("PUT", "/rag_chunks-abc-0001")
    body = put.json
    assert body["settings"] == {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"}
    props = body["mappings"]["properties"]
    assert props["vector"] == {
        "type": "dense_vector",
        "dims": DIM,
        "index": True,
        "similarity": "cosine",
        "index_options": {"type": "int8_hnsw"},  # explicit: 9.1+ would otherwise pick bbq_hnsw at 384 dims
    }
    assert props["text"] == {"type": "text"}
    assert props["title"]["type"] == "text" and props["title"]["fields"]["raw"]["type"] == "keyword"
    for keyword in ("chunk_id", "document_id", "source", "document_version", "run_id", "chunker", "model"):
        assert props[keyword] == {"type": "keyword"}, keyword
    assert body["mappings"]["dynamic"] == "strict"
    assert body["mappings"]["_meta"]["alias"] == "rag_chunks"
    # The 9.x client negotiates the 9 compatibility API: servers of other majors refuse it.
    assert "compatible-with=9" in put.headers["accept"]


@pytest.mark.parametrize("options", ["hnsw", "bbq_hnsw", "flat"])
def test_index_options_are_selectable(options: str) -> None:
    assert mapping(384, options, {})["properties"]["vector"]["index_options"] == {"type": options}


def test_unknown_index_options_are_rejected() -> None:
    with pytest.raises(BackendError, match="index_options"):
        mapping(384, "ivf", {})


def test_upsert_sends_one_ndjson_bulk_with_ids_and_provenance(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    backend = backend_for(url)
    assert backend.upsert("idx", [chunk("c1"), chunk("c2"), chunk("c1", "newer")]) == 2
    [bulk] = rec.of("PUT", "/_bulk")
    assert bulk.headers["content-type"].startswith("application/vnd.elasticsearch+x-ndjson")
    lines = bulk.ndjson
    assert [line for line in lines[::2]] == [
        {"index": {"_index": "idx", "_id": "c1"}},
        {"index": {"_index": "idx", "_id": "c2"}},
    ]
    doc = lines[1]
    assert doc["text"] == "newer"  # the last write of an id wins
    assert doc["vector"] == [0.5, 0.5, 0.5, 0.5]
    assert doc["index_version"] == "idx" and doc["model"] == "m" and doc["chunker"] == "c"
    assert len(doc["text_sha256"]) == 64


def test_a_metadata_update_is_a_partial_update_without_the_vector(
    recorder: tuple[RecordingElasticsearch, str],
) -> None:
    rec, url = recorder
    rec.script("PUT", "/_bulk", lambda r: (200, bulk_response(r.ndjson, {"gone": 404})))
    updates = [ChunkMetadata("c1", "A", "Guide", "v2", "run-2"), ChunkMetadata("gone", "A", "", "v2", "run-2")]
    with pytest.raises(BulkWriteError) as failure:
        backend_for(url).update_metadata("idx", updates)
    assert failure.value.failures == [("gone", "document_missing_exception: [gone]: document missing (status 404)")]
    [bulk] = rec.of("PUT", "/_bulk")
    assert bulk.ndjson[::2] == [{"update": {"_index": "idx", "_id": cid}} for cid in ("c1", "gone")]
    assert bulk.ndjson[1] == {
        "doc": {"title": "A", "heading_path": "Guide", "document_version": "v2", "run_id": "run-2"}
    }


def test_bulk_item_429_is_retried_alone_with_backoff(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    rec.script("PUT", "/_bulk", lambda r: (200, bulk_response(r.ndjson, {"c2": 429})))
    backend_for(url).upsert("idx", [chunk("c1"), chunk("c2")])
    first, second = rec.of("PUT", "/_bulk")
    assert len(first.ndjson) == 4
    assert second.ndjson[0] == {"index": {"_index": "idx", "_id": "c2"}}  # only the rejected item again
    assert len(second.ndjson) == 2


def test_rejected_items_are_reported_by_chunk_and_reason(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    rec.script("PUT", "/_bulk", lambda r: (200, bulk_response(r.ndjson, {"c2": 400})))
    with pytest.raises(BulkWriteError) as failure:
        backend_for(url).upsert("idx", [chunk("c1"), chunk("c2")])
    assert failure.value.failures == [("c2", "document_parsing_exception: recorded failure for c2 (status 400)")]


def test_whole_request_429_and_503_are_retried_by_the_transport(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    rec.script("PUT", "/_bulk", (429, {"error": {"type": "es_rejected_execution_exception"}, "status": 429}))
    rec.script("PUT", "/_bulk", (503, {"error": {"type": "unavailable"}, "status": 503}))
    assert backend_for(url).upsert("idx", [chunk("c1")]) == 1
    assert len(rec.of("PUT", "/_bulk")) == 3


def test_persistent_5xx_is_backend_unavailable(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    for _ in range(30):
        rec.script("PUT", "/_bulk", (503, {"error": {"type": "unavailable", "reason": "busy"}, "status": 503}))
    with pytest.raises(BackendUnavailable, match="503"):
        backend_for(url).upsert("idx", [chunk("c1")])
    # 3 transport attempts (max_retries=2) for each of the bulk helper's 6 attempts (max_retries=5), then give up.
    assert len(rec.of("PUT", "/_bulk")) == 18


def test_delete_of_unknown_ids_is_a_no_op(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    rec.script("PUT", "/_bulk", lambda r: (200, bulk_response(r.ndjson, {"gone": 404})))
    assert backend_for(url).delete("idx", ["gone", "c1", "c1"]) == 2
    [bulk] = rec.of("PUT", "/_bulk")
    assert bulk.ndjson == [{"delete": {"_index": "idx", "_id": "c1"}}, {"delete": {"_index": "idx", "_id": "gone"}}]


def test_missing_index_is_index_missing(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    missing = {
        "error": {"type": "index_not_found_exception", "reason": "no such index [nope]"},
        "status": 404,
    }
    rec.script("POST", "/nope/_search", (404, missing))
    with pytest.raises(IndexMissing, match="index_not_found_exception"):
        backend_for(url).search_keyword("nope", "alpha", 3)


def test_knn_request_and_cosine_scores(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    rec.search_hits = [hit("b", 0.9), hit("a", 0.9), hit("c", 0.75)]
    hits = backend_for(url).search_dense("idx", [1.0, 0.0, 0.0, 0.0], 2, {"source": ["s1", "s2"], "title": "T"})
    [search] = rec.of("POST", "/idx/_search")
    knn = search.json["knn"]
    assert knn["field"] == "vector" and knn["query_vector"] == [1.0, 0.0, 0.0, 0.0]
    assert knn["num_candidates"] >= knn["k"] >= 2
    assert knn["filter"] == [{"terms": {"source": ["s1", "s2"]}}, {"terms": {"title.raw": ["T"]}}]
    # (1 + cos) / 2 back to the cosine; ties broken by chunk id.
    assert [(h.chunk_id, round(h.score, 6)) for h in hits] == [("a", 0.8), ("b", 0.8)]


def test_bad_filter_field_is_rejected_before_any_request(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    with pytest.raises(ValueError, match="unknown filter field"):
        backend_for(url).search_keyword("idx", "alpha", 3, {"vector": "x"})
    assert not rec.of("POST", "/idx/_search")


def test_hybrid_on_a_basic_license_fuses_client_side(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    rec.search_hits = [hit("a", 0.9), hit("b", 0.8)]
    hits = backend_for(url).search_hybrid("idx", "alpha", [1.0, 0, 0, 0], 2, rrf_k=20, weights=(1.0, 0.2))
    searches = [r.json for r in rec.of("POST", "/idx/_search")]
    assert sorted(next(k for k in ("knn", "query") if k in body) for body in searches) == ["knn", "query"]
    assert searches[1]["query"]["bool"]["must"] == [{"match": {"text": {"query": "alpha"}}}]
    assert [h.chunk_id for h in hits] == ["a", "b"]
    assert hits[0].score == pytest.approx(1.0 / 21 + 0.2 / 21)


def test_hybrid_uses_the_weighted_rrf_retriever_when_licensed(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    rec.license_type, rec.version = "trial", "9.2.0"
    rec.search_hits = [hit("a", 0.03)]
    backend_for(url).search_hybrid("idx", "alpha", [1.0, 0, 0, 0], 5, candidates=50, rrf_k=20, weights=(1.0, 0.2))
    [search] = rec.of("POST", "/idx/_search")
    rrf = search.json["retriever"]["rrf"]
    assert rrf["rank_constant"] == 20 and rrf["rank_window_size"] == 50
    dense, keyword = rrf["retrievers"]
    assert dense["weight"] == 1.0 and dense["retriever"]["knn"]["field"] == "vector"
    assert keyword["weight"] == 0.2 and "match" in str(keyword["retriever"]["standard"]["query"])


def test_weighted_hybrid_before_9_2_falls_back_to_client_fusion(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    # RRF is an enterprise feature (platinum gets a 403: test_es_server_rules), so enterprise it is here.
    rec.license_type, rec.version = "enterprise", "9.1.0"
    backend = backend_for(url)
    backend.search_hybrid("idx", "alpha", [1.0, 0, 0, 0], 5, weights=(1.0, 0.2))
    assert all("retriever" not in r.json for r in rec.of("POST", "/idx/_search"))
    backend.search_hybrid("idx", "alpha", [1.0, 0, 0, 0], 5, weights=(1.0, 1.0))
    last = rec.of("POST", "/idx/_search")[-1].json
    assert [list(child) for child in last["retriever"]["rrf"]["retrievers"]] == [["knn"], ["standard"]]


def test_alias_swap_is_one_atomic_aliases_request(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    rec.script("GET", "/_alias/rag_chunks", (200, {"rag_chunks-old-0001": {"aliases": {"rag_chunks": {}}}}))
    backend_for(url).swap_alias("rag_chunks", "rag_chunks-new-0002")
    [aliases] = rec.of("POST", "/_aliases")
    assert aliases.json == {
        "actions": [
            {"remove": {"index": "rag_chunks-old-0001", "alias": "rag_chunks"}},
            {"add": {"index": "rag_chunks-new-0002", "alias": "rag_chunks"}},
        ]
    }


def test_index_prefix_applies_to_indexes_and_aliases(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    rec.script("GET", "/_alias/test-rag_chunks", (200, {"test-rag_chunks-v-0001": {"aliases": {}}}))
    backend = backend_for(url, RAG_ES_INDEX_PREFIX="test-")
    assert backend.resolve_alias("rag_chunks") == "rag_chunks-v-0001"
    backend.count("rag_chunks-v-0001")
    assert rec.of("POST", "/test-rag_chunks-v-0001/_count") or rec.of("GET", "/test-rag_chunks-v-0001/_count")


def test_unreachable_server_is_a_clear_error_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    backend = backend_for("http://127.0.0.1:9", RAG_ES_USERNAME="elastic", RAG_ES_PASSWORD="s3cret-pw")
    with pytest.raises(BackendUnavailable) as failure:
        backend.count("idx")
    assert "unreachable" in str(failure.value) and "127.0.0.1:9" in str(failure.value)
    assert "s3cret-pw" not in str(failure.value) and "s3cret-pw" not in caplog.text


def test_credentials_in_the_url_never_reach_messages() -> None:
    config = ElasticsearchConfig.from_env({"RAG_ES_URL": "https://elastic:pw123@es.example:9200"})
    assert config.safe_url == "https://es.example:9200"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "RAG_ES_URL"),
        ({"RAG_ES_URL": "http://x", "RAG_ES_USERNAME": "u"}, "RAG_ES_PASSWORD"),
        ({"RAG_ES_URL": "http://x", "RAG_ES_TIMEOUT_S": "soon"}, "RAG_ES_TIMEOUT_S"),
        ({"RAG_ES_URL": "http://x", "RAG_ES_INDEX_PREFIX": "Bad/"}, "RAG_ES_INDEX_PREFIX"),
    ],
)
def test_configuration_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(BackendError, match=message):
        ElasticsearchConfig.from_env(env)


def test_authentication_failure_is_reported_as_unavailable(recorder: tuple[RecordingElasticsearch, str]) -> None:
    rec, url = recorder
    rec.script("POST", "/idx/_count", (401, {"error": {"type": "security_exception"}, "status": 401}))
    with pytest.raises(BackendUnavailable, match="credentials"):
        backend_for(url, RAG_ES_API_KEY="k").count("idx")
    assert rec.requests[-1].headers["authorization"] == "ApiKey k"


@pytest.mark.parametrize(("version", "asks_for_vectors"), [("9.0.3", False), ("9.2.1", True)])
def test_get_asks_for_vectors_that_9_2_leaves_out_of_source(
    recorder: tuple[RecordingElasticsearch, str], version: str, asks_for_vectors: bool
) -> None:
    rec, url = recorder
    rec.version = version
    doc = hit("c1", 1.0)
    doc["_source"]["vector"] = [0.5, 0.5, 0.5, 0.5]  # type: ignore[index]
    rec.search_hits = [doc]
    [got] = backend_for(url).get("idx", ["c1"])
    assert got.vector == [0.5, 0.5, 0.5, 0.5]
    [search] = rec.of("POST", "/idx/_search")
    assert search.json["query"] == {"ids": {"values": ["c1"]}}
    assert ("exclude_vectors" in search.json["_source"]) is asks_for_vectors
