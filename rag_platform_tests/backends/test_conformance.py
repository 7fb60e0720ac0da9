"""Runs the backend conformance suite (``contract.py``) against every backend.

The embedded backend always runs. Elasticsearch runs when ``RAG_ES_URL`` is set (``make test-es`` against the
compose stack); otherwise its cases are reported as skipped with that reason, never as passed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from backends.contract import CHECKS

from rag_platform.backends import IndexBackend
from rag_platform.backends.lancedb import LanceDBBackend
from rag_platform.config import Settings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

BACKENDS = [
    pytest.param("lancedb", id="lancedb"),
    pytest.param("elasticsearch", id="elasticsearch", marks=pytest.mark.es),
]


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IndexBackend]:
    if request.param == "lancedb":
        lance = LanceDBBackend(tmp_path / "index")
        yield lance
        lance.close()
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


def delete_prefixed(client: Elasticsearch, prefix: str) -> None:
    """Delete every index under ``prefix`` by its concrete name, and with it its aliases.

    Wildcard index deletes are refused since 8.0 (``action.destructive_requires_name`` defaults to true,
    elasticsearch PR #85591), so the names are listed first; deleting an index removes the aliases on it.
    """
    names = sorted(client.indices.get_alias(index=f"{prefix}*", allow_no_indices=True))
    if names:
        client.indices.delete(index=",".join(names), ignore_unavailable=True)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
def test_backend_conforms(backend: IndexBackend, check: Callable[[IndexBackend, str], None]) -> None:
    check(backend, "conf")
