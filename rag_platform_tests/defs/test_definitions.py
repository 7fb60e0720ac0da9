"""The Dagster definitions load from workspace.yaml, and a real webserver lists every asset over GraphQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXPECTED_ASSETS = {
    "raw_documents",
    "stg_documents",
    "current_documents",
    "document_chunks",
    "chunk_embeddings",
    "search_index",
    "reranked_query_results",
    "retrieval_evaluation",
}
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def prepared_home(platform_home: Path) -> Path:
    """A home prepared as every rag-platform command prepares it (instance folder, dbt manifest)."""
    from rag_platform.config import load_settings
    from rag_platform.defs.runner import prepare_home

    prepare_home(load_settings())
    return platform_home


def home_files(home: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(home)): (p.stat().st_mtime_ns, p.stat().st_size) for p in home.rglob("*")}


def test_loading_the_definitions_writes_nothing_and_runs_nothing(prepared_home: Path) -> None:
    before = home_files(prepared_home)
    code = "import rag_platform.definitions as d; print(len(d.defs.resolve_asset_graph().get_all_asset_keys()))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.strip()) >= len(EXPECTED_ASSETS)
    assert home_files(prepared_home) == before


def test_definitions_without_a_manifest_name_the_step_that_prepares_it(platform_home: Path) -> None:
    code = "import rag_platform.definitions"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "python -m rag_platform.dbt" in result.stderr
    assert not platform_home.exists() or not any(platform_home.rglob("*"))


def test_definitions_validate_from_workspace_yaml(prepared_home: Path) -> None:
    platform_home = prepared_home
    result = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        capture_output=True,
        text=True,
        env={**os.environ},
        cwd=platform_home.parent,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_definitions_object_has_every_asset_group_and_kind(prepared_home: Path) -> None:
    from rag_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys >= EXPECTED_ASSETS
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_external:
            continue
        assert node.group_name, key
        assert node.description, key
    checks = {key.name for key in graph.asset_check_keys}
    assert {
        "documents_pass_quality_suite",
        "chunks_pass_quality_suite",
        "embeddings_pass_quality_suite",
        "index_matches_ledger",
        "index_delete_fraction_within_limit",
        "retrieval_quality_within_tolerance",
        "no_documents_quarantined",
    } <= checks
    assert any(name.startswith("unique_current_documents") for name in checks)


def test_the_served_index_is_checked_for_freshness_by_lag_not_by_age(prepared_home: Path) -> None:
    """Regression: a 24-hour time-window policy marked a quiet, up-to-date index stale. Freshness is now the
    lag of unindexed source changes (tested in test_sensors), so no time-window policy may come back."""
    import dagster as dg

    from rag_platform.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    assert graph.get(dg.AssetKey("search_index")).freshness_policy is None
    assert dg.AssetCheckKey(dg.AssetKey("search_index"), "search_index_reflects_sources") in graph.asset_check_keys


def test_dbt_resource_skips_the_version_subprocess_and_the_unused_adapter() -> None:
    import re

    from dagster_dbt import DbtCliResource
    from packaging import version

    from rag_platform.defs.transform import dbt_resource

    resource = dbt_resource()
    for hook in ("_cli_version", "_initialize_dbt_core_adapter"):
        assert hook in vars(DbtCliResource), f"dagster-dbt no longer calls {hook}: the override is dead code"
    assert resource._initialize_dbt_core_adapter(["build"]) is None
    assert type(resource)._cli_version is not DbtCliResource._cli_version
    reported = subprocess.run([resource.dbt_executable, "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"(\d+\.\d+\.\d+)", reported.stdout)
    assert match and resource._cli_version == version.parse(match.group(1))


def test_domain_modules_do_not_import_dagster() -> None:
    code = (
        "import sys\n"
        "import rag_platform.cli, rag_platform.pipeline.steps, rag_platform.index_sync, rag_platform.lineage, "
        "rag_platform.chunking, rag_platform.ingest, rag_platform.quality, rag_platform.versions\n"
        "assert 'dagster' not in sys.modules, sorted(m for m in sys.modules if m.startswith('dagster'))[:5]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_webserver_serves_the_asset_graph(prepared_home: Path) -> None:
    platform_home = prepared_home
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=platform_home.parent,
    )
    try:
        query = {"query": "{ assetNodes { assetKey { path } groupName hasAssetChecks } }"}
        deadline = time.monotonic() + 180
        payload = None
        while time.monotonic() < deadline:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    data=json.dumps(query).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=10) as response:
                    payload = json.loads(response.read())
                if payload.get("data", {}).get("assetNodes"):
                    break
            except OSError:
                pass
            assert process.poll() is None, process.stderr.read().decode()[-2000:] if process.stderr else ""
            time.sleep(1)
        assert payload is not None, "webserver never answered"
        nodes = payload["data"]["assetNodes"]
        names = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert names >= EXPECTED_ASSETS
        groups = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}
        assert groups["raw_documents"] == "ingest" and groups["current_documents"] == "transform"
        assert groups["search_index"] == "index" and groups["reranked_query_results"] == "query"
        assert groups["retrieval_evaluation"] == "quality"
    finally:
        process.terminate()
        process.wait(timeout=30)
