"""The whole platform on Elasticsearch with exactly the least-privilege API key of README "Run with
Elasticsearch": the console script builds, checks (consistency gate included), publishes and searches hybrid
through the enforcing stand-in (``es_recorder``), whose only refusals are the server facts the key may not read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends.es_recorder import RecordingElasticsearch, serve
from shared_env import inherited_environment

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).parents[1] / "data" / "corpus"


@pytest.fixture
def stand_in() -> Iterator[tuple[RecordingElasticsearch, str]]:
    rec = RecordingElasticsearch(strict_indexes=True, version="9.2.0", license_type="enterprise")
    rec.add_api_key("least-privilege", [], [(["rag_chunks*"], ["read", "write", "manage"])])
    url, stop = serve(rec)
    yield rec, url
    stop()


def test_refresh_gates_and_hybrid_search_with_the_least_privilege_key(
    stand_in: tuple[RecordingElasticsearch, str], tmp_path: Path, tiny_model_dir: Path
) -> None:
    rec, url = stand_in
    env = inherited_environment()
    env.update(
        {
            "RAG_PLATFORM_HOME": str(tmp_path / "home"),
            "DAGSTER_HOME": str(tmp_path / "home" / "dagster"),
            "RAG_PLATFORM__EMBEDDING__MODEL": str(tiny_model_dir),
            "RAG_ES_URL": url,
            "RAG_ES_API_KEY": "least-privilege",
        }
    )

    def cli(*args: str) -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-m", "rag_platform.cli", *args, "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return dict(json.loads(done.stdout))

    for run in range(2):  # a build, then an incremental refresh of the served version
        result = cli("refresh", "--source", str(CORPUS))
        gates = dict(result["gates"])  # type: ignore[arg-type]
        assert result["published"] is True and gates, result
        assert all(g["passed"] for g in gates.values()), gates
        assert "index_matches_ledger" in gates
        index = dict(result["index"])  # type: ignore[arg-type]
        [version] = [n for n, s in rec.indexes.items() if "rag_chunks" in s.aliases]
        assert index["count"] == len(rec.indexes[version].docs) > 0, run
    found = cli("search", "how to bake bread", "--mode", "hybrid", "--k", "3")
    assert found["results"]
    # Only what the key may not read was refused; hybrid search fused client-side without the license.
    assert rec.violations and all(v.startswith(("GET /:", "GET /_license:")) for v in rec.violations)
    assert not any(b'"retriever"' in r.raw for r in rec.requests)
    replicas = rec.indexes[version].settings.get("number_of_replicas")
    assert replicas == 1, "the served version got index.replicas replicas"
