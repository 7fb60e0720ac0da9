"""The query API through a real uvicorn server on 127.0.0.1, over an index built by the real pipeline."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from served_api import Server

pytestmark = pytest.mark.slow


def test_health_and_search_with_provenance(api: httpx.Client) -> None:
    health = api.get("/health").json()
    assert health["status"] == "ok" and health["index_version"]
    response = api.post("/search", json={"query": "Sicilian Defence chess opening", "k": 3, "mode": "keyword"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["index_version"] == health["index_version"]
    top = body["results"][0]
    assert top["source"].endswith("chess.txt") and top["rank"] == 1
    assert top["reranked"] == {"applied": False, "provider": "none", "reason": "reranking disabled"}
    for mode in ("dense", "hybrid"):
        assert api.post("/search", json={"query": "tides", "mode": mode}).status_code == 200


def test_quarantine_lists_each_document_with_its_reason(api: httpx.Client) -> None:
    response = api.get("/quarantine")
    assert response.status_code == 200
    [entry] = response.json()
    assert entry["source"].endswith("empty.md") and "empty" in entry["reason"] and entry["since"]
    assert entry["code"] == "empty"


def test_filters_restrict_results(api: httpx.Client) -> None:
    everything = api.post("/search", json={"query": "the", "k": 20, "mode": "dense"}).json()["results"]
    source = everything[-1]["source"]
    filtered = api.post("/search", json={"query": "the", "k": 20, "mode": "dense", "filters": {"source": source}})
    assert filtered.status_code == 200
    assert {r["source"] for r in filtered.json()["results"]} == {source}


def test_lineage_routes(api: httpx.Client) -> None:
    hit = api.post("/search", json={"query": "volcano", "mode": "keyword"}).json()["results"][0]
    chunk = api.get(f"/chunks/{hit['chunk_id']}/lineage")
    assert chunk.status_code == 200 and chunk.json()["source"] == hit["source"]
    document = api.get(f"/documents/{hit['document_id']}")
    assert document.status_code == 200 and hit["chunk_id"] in document.json()["chunks"]
    assert api.get("/chunks/" + "0" * 32 + "/lineage").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        (
            "post",
            "/search",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "bad_request",
        ),
        ("post", "/search", {"json": {"query": "x", "k": 0}}, 422, "validation_error"),
        ("post", "/search", {"json": {"query": "x", "k": 101}}, 422, "validation_error"),
        ("post", "/search", {"json": {"query": "x", "k": "ten"}}, 422, "validation_error"),
        ("post", "/search", {"json": {"query": ""}}, 422, "validation_error"),
        ("post", "/search", {"json": {"query": "x", "mode": "fuzzy"}}, 422, "validation_error"),
        ("post", "/search", {"json": {"query": "x", "rerank": "magic"}}, 422, "validation_error"),
        ("post", "/search", {"json": {"query": "x", "filters": {"colour": "red"}}}, 422, "validation_error"),
        ("post", "/search", {"json": {"query": "x", "filters": {"source": 3}}}, 422, "validation_error"),
        ("post", "/search", {"json": [1, 2]}, 422, "validation_error"),
        ("post", "/search", {"content": b"x" * (1024 * 1024 + 1)}, 413, "payload_too_large"),
        ("get", "/search", {}, 405, "method_not_allowed"),
        ("get", "/nowhere", {}, 404, "not_found"),
        ("get", "/documents/not-an-id!", {}, 404, "not_found"),
    ],
)
def test_client_mistakes_get_4xx_with_error_body(
    api: httpx.Client, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    response = getattr(api, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]


def test_api_keys(built_home: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    monkeypatch.setenv("RAG_PLATFORM_HOME", str(built_home))
    monkeypatch.setenv("RAG_PLATFORM__EMBEDDING__MODEL", str(tiny_model_dir))
    with Server(built_home, keys="alpha, beta") as client:
        assert client.get("/health").status_code == 200
        denied = client.post("/search", json={"query": "tides", "mode": "keyword"})
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
        wrong = client.post("/search", json={"query": "tides"}, headers={"Authorization": "Bearer gamma"})
        assert wrong.status_code == 401
        ok = client.post(
            "/search", json={"query": "tides", "mode": "keyword"}, headers={"Authorization": "Bearer beta"}
        )
        assert ok.status_code == 200


def test_missing_index_is_503_and_the_server_recovers(
    built_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    empty = tmp_path / "empty-home"
    monkeypatch.setenv("RAG_PLATFORM_HOME", str(empty))
    with Server(empty) as client:
        response = client.post("/search", json={"query": "tides", "mode": "keyword"})
        assert response.status_code == 503 and response.json()["error"]["code"] == "index_missing"
        shutil.copytree(built_home / "index", empty / "index")  # an index appears while the server runs
        assert client.post("/search", json={"query": "tides", "mode": "keyword"}).status_code == 200


def test_openapi_documents_the_error_shape(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    assert "/search" in spec["paths"] and "ErrorBody" in json.dumps(spec["components"])


def test_unreachable_elasticsearch_is_503_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    monkeypatch.setenv("RAG_PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAG_PLATFORM__EMBEDDING__MODEL", str(tiny_model_dir))
    monkeypatch.setenv("RAG_ES_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("RAG_ES_PASSWORD", "never-shown")
    monkeypatch.setenv("RAG_ES_USERNAME", "elastic")
    monkeypatch.setenv("RAG_ES_TIMEOUT_S", "2")
    with Server(tmp_path / "home") as client:
        assert client.get("/health").status_code in (200, 503)
        response = client.post("/search", json={"query": "tides", "mode": "keyword"})
        assert response.status_code == 503, response.text
        body = response.json()["error"]
        assert body["code"] == "backend_unavailable" and "unreachable" in body["message"]
        assert "never-shown" not in response.text


def test_openapi_contract_holds_for_generated_requests(api: httpx.Client) -> None:
    """schemathesis: generated requests, valid and invalid, against the live server; never a 500, and every
    response matches the documented schema and status codes."""
    from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

    schema = schemathesis.openapi.from_url(f"{api.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/health", "/search", "/documents/{document_id}"}
    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):

        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis.settings(
            max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(hypothesis.HealthCheck)
        )
        def exercise(case: Any) -> None:
            case.call_and_validate(checks=[not_a_server_error, status_code_conformance, response_schema_conformance])

        try:
            exercise()
        except hypothesis.errors.Unsatisfiable:
            # An operation without parameters or body (GET /health) has no invalid request to generate.
            assert mode is schemathesis.GenerationMode.NEGATIVE and not operation.body and not operation.query
