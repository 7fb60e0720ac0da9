"""A run costs what changed: with real Dagster, dbt, GX, the bundled model and LanceDB, a refresh that finds
nothing new skips every step after raw_documents, reports the served state, and the sensor asks for no run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from rag_platform import warehouse
from rag_platform.backends import make_backend
from rag_platform.config import load_settings
from rag_platform.ingest import register_source
from rag_platform.lineage import status

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


def refresh() -> tuple[dict, set[str], set[str]]:
    """Run the CLI's refresh path; returns its summary, the steps that ran and the steps Dagster skipped."""
    from rag_platform.defs.runner import execute_refresh
    from rag_platform.pipeline.run_record import run_summary

    outcome = execute_refresh(load_settings(), False, trigger="test")
    assert outcome.success, outcome.failure
    succeeded, skipped = set(), set()
    for entry in dg.DagsterInstance.get().all_logs(outcome.run_id):
        event = entry.dagster_event
        if event is not None and event.event_type_value == "STEP_SUCCESS":
            succeeded.add(event.step_key)
        elif event is not None and event.event_type_value == "STEP_SKIPPED":
            skipped.add(event.step_key)
    return run_summary(load_settings(), outcome.run_id), succeeded, skipped


def sensor_tick(cursor: str | None) -> tuple[list[dg.RunRequest], str | None, str | None]:
    from rag_platform.defs.sensors import build_corpus_sensor

    context = dg.build_sensor_context(instance=dg.DagsterInstance.get(), cursor=cursor)
    data = build_corpus_sensor(30).evaluate_tick(context)
    return list(data.run_requests or []), data.cursor, data.skip_message


def served_state() -> dict:
    settings = load_settings()
    report = status(settings, make_backend(settings))
    return {k: report[k] for k in ("documents", "chunks", "index")}


def test_a_refresh_with_nothing_to_do_skips_downstream_and_reports_the_served_state(
    platform_home: Path, tmp_path: Path
) -> None:
    source = tmp_path / "corpus"
    shutil.copytree(CORPUS, source)
    settings = load_settings()
    with warehouse.writer(settings) as con:
        register_source(con, source)

    first, ran, _ = refresh()
    assert first["published"] and first["documents"]["added"] == 5 and "search_index" in ran
    before = served_state()

    # Right after a CLI refresh, the sensor's first tick finds nothing the warehouse lacks.
    requests, cursor, skip = sensor_tick(None)
    assert requests == [] and skip and skip.startswith("no change")

    second, ran, skipped = refresh()
    assert ran == {"raw_documents"}
    assert {"dbt_models", "document_chunks", "chunk_embeddings", "search_index", "reranked_query_results"} <= skipped
    assert second["unchanged_since"] == first["run_id"] and second["published"]
    assert second["documents"] == {**first["documents"], "added": 0, "unchanged": 5}
    assert second["chunks"]["total"] == first["chunks"]["total"] and second["chunks"]["embedded"] == 0
    assert second["index"]["version"] == first["index"]["version"]
    assert second["index"]["count"] == first["index"]["count"] and second["gates"] == {}
    assert served_state() == before
    check_search_process(source)

    # A change is one run request, and the run that takes it does the work again.
    (source / "baking.md").write_text((source / "baking.md").read_text() + "\nProof the dough overnight.\n")
    requests, cursor, _ = sensor_tick(cursor)
    assert len(requests) == 1 and requests[0].tags["rag/changes"] == "0 added, 1 modified, 0 deleted, 0 moved"
    third, ran, _ = refresh()
    assert third["unchanged_since"] is None and third["documents"]["modified"] == 1 and "search_index" in ran
    assert third["chunks"]["embedded"] >= 1 and third["published"]


def check_search_process(source: Path) -> None:
    """``rag-platform search`` in its own process: no torch, sentence-transformers or Dagster imported, and
    ``--group-by-document`` keeps each document's best chunk only."""
    code = (
        "import json, sys\n"
        "from rag_platform.cli import main\n"
        "main(sys.argv[1:])\n"
        "heavy = ('torch', 'sentence_transformers', 'transformers', 'dagster')\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)), file=sys.stderr)\n"
    )

    def run(*args: str) -> tuple[dict, list[str]]:
        done = subprocess.run(
            [sys.executable, "-c", code, "search", "how to roll back an index", "--json", "--mode", "dense", *args],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ},
        )
        return json.loads(done.stdout), json.loads(done.stderr.strip().splitlines()[-1])

    ungrouped, imported = run("--k", "50")
    assert imported == []
    grouped, _ = run("--k", "3", "--group-by-document")
    documents = [r["document_id"] for r in grouped["results"]]
    assert len(documents) == len(set(documents)) == 3
    best_first: list[str] = []
    for result in ungrouped["results"]:
        if result["document_id"] not in best_first:
            best_first.append(result["document_id"])
    assert documents == best_first[:3]
    assert [r["chunk_id"] for r in grouped["results"]] == [
        next(r["chunk_id"] for r in ungrouped["results"] if r["document_id"] == d) for d in documents
    ]


def test_materializing_a_selection_runs_dbt_in_its_own_process_beside_the_run(
    platform_home: Path, tmp_path: Path
) -> None:
    """The UI's "materialize selected": a subset of the dbt models goes through dagster-dbt's subprocess, which
    must be able to open the warehouse the run otherwise keeps open; the run's later steps still write it."""
    from rag_platform.defs.runner import _definitions, execute_refresh
    from rag_platform.defs.sensors import REFRESH_JOB

    source = tmp_path / "corpus"
    shutil.copytree(CORPUS, source)
    settings = load_settings()
    with warehouse.writer(settings) as con:
        register_source(con, source)
    assert execute_refresh(settings, False, trigger="test").success
    (source / "baking.md").write_text((source / "baking.md").read_text() + "\nProof the dough overnight.\n")

    job = _definitions().resolve_job_def(REFRESH_JOB)
    selection = [dg.AssetKey(name) for name in ("raw_documents", "stg_documents", "document_chunks")]
    result = job.execute_in_process(
        instance=dg.DagsterInstance.get(), asset_selection=selection, raise_on_error=False, tags={"rag/trigger": "test"}
    )
    assert result.success
    done = {event.step_key for event in result.all_events if event.event_type_value == "STEP_SUCCESS"}
    assert {"raw_documents", "dbt_models", "document_chunks"} <= done
    with warehouse.owner_reader(settings) as con:
        assert con is not None
        [(staged,)] = con.execute("SELECT count(*) FROM stg_documents WHERE uri LIKE '%baking.md'").fetchall()
    assert staged == 2  # both versions of the edited file reached dbt's staging model
