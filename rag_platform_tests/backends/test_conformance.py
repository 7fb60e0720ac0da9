"""Runs the backend conformance suite (``contract.py``) against every backend.

The embedded backend always runs, and so does the Elasticsearch backend against the enforcing stand-in
(``es_recorder``: API specification and server rules, a least-privilege API key). A live Elasticsearch runs when
``RAG_ES_URL`` is set (``make test-es`` against the compose stack); otherwise its cases are reported as skipped
with that reason, never as passed. Each case deletes the indexes it created, by their concrete names.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from backends.contract import CHECKS, delete_prefixed

from rag_platform.backends import IndexBackend
from rag_platform.backends.lancedb import LanceDBBackend
from rag_platform.config import Settings

BACKENDS = [
    pytest.param("lancedb", id="lancedb"),
    pytest.param("es-stand-in", id="es-stand-in"),
    pytest.param("es-stand-in-rrf", id="es-stand-in-rrf"),
    pytest.param("elasticsearch", id="elasticsearch", marks=pytest.mark.es),
]


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IndexBackend]:
    if request.param == "lancedb":
        lance = LanceDBBackend(tmp_path / "index")
        yield lance
        lance.close()
        return
    if request.param.startswith("es-stand-in"):
        check_name = request.node.callspec.params["check"].__name__.removeprefix("check_")
        yield from stand_in_backend(tmp_path, check_name, server_rrf=request.param.endswith("-rrf"))
        return
    if not os.environ.get("RAG_ES_URL"):
        pytest.skip("RAG_ES_URL is not set: no Elasticsearch to run the live conformance suite against")
    from rag_platform.backends.elasticsearch import ElasticsearchBackend

    prefix = f"rag-test-{uuid.uuid4().hex[:8]}-"
    env = {**os.environ, "RAG_ES_INDEX_PREFIX": prefix}
    es = ElasticsearchBackend.from_env(Settings(home=tmp_path), env)
    try:
        yield es
    finally:
        delete_prefixed(es.client, prefix)
        es.close()


def stand_in_backend(tmp_path: Path, check_name: str, *, server_rrf: bool) -> Iterator[IndexBackend]:
    """The Elasticsearch backend against the enforcing stand-in (``es_recorder``), holding its indexes like a
    server, with an API key that has exactly the least-privilege grants of README "Run with Elasticsearch"
    (``server_rrf``: plus ``monitor`` on an enterprise license, so hybrid search runs the server's RRF)."""
    from backends.es_recorder import RecordingElasticsearch, serve

    from rag_platform.backends.elasticsearch import ElasticsearchBackend

    prefix = f"rag-test-{uuid.uuid4().hex[:8]}-"
    rec = RecordingElasticsearch(strict_indexes=True, version="9.2.0", license_type="enterprise")
    cluster = ["monitor"] if server_rrf else []
    rec.add_api_key("least-privilege", cluster, [([f"{prefix}*"], ["read", "write", "manage"])])
    url, stop = serve(rec)
    env = {"RAG_ES_URL": url, "RAG_ES_API_KEY": "least-privilege", "RAG_ES_INDEX_PREFIX": prefix}
    es = ElasticsearchBackend.from_env(Settings(home=tmp_path), env)
    try:
        yield es
        delete_prefixed(es.client, prefix)
        assert not rec.indexes, f"the suite left indexes behind: {sorted(rec.indexes)}"
        unexpected = [v for v in rec.violations if server_rrf or not v.startswith(("GET /:", "GET /_license:"))]
        assert not unexpected, f"the stand-in refused requests a server would refuse: {unexpected}"
        retrievers = [r for r in rec.requests if r.path.endswith("/_search") and b'"retriever"' in r.raw]
        assert bool(retrievers) == (server_rrf and check_name == "hybrid_fuses_both_rankings")
    finally:
        es.close()
        stop()


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
def test_backend_conforms(backend: IndexBackend, check: Callable[[IndexBackend, str], None]) -> None:
    check(backend, "conf")
