"""The refresh job every path runs (CLI, sensor, UI), and the sensor that notices source changes."""

from pathlib import Path

import dagster as dg

from rag_platform import warehouse
from rag_platform.config import load_settings
from rag_platform.defs.ingest import FULL_TAG
from rag_platform.defs.liveness import fail_dead_runs
from rag_platform.sources import corpus_fingerprint, hash_sources, source_changes

REFRESH_JOB = "refresh_index"
REBUILD_JOB = "rebuild_index"

# One process per run: the refresh lock resource then spans the whole run, and steps share the loaded model.
refresh_job = dg.define_asset_job(
    REFRESH_JOB,
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    description="Ingest, transform, chunk, embed and index what changed, then refresh the standing queries.",
)
rebuild_job = dg.define_asset_job(
    REBUILD_JOB,
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    tags={FULL_TAG: "true"},
    description="Re-chunk everything and build a new index version beside the served one; publish when gates pass.",
)


def known_sources() -> tuple[list[Path], dict[str, str | None]]:
    """Registered source folders and ``uri -> version`` of every live or quarantined document, from the read
    snapshot (the sensor never opens the warehouse)."""
    with warehouse.reader(load_settings()) as con:
        if con is None:
            return [], {}
        folders = [Path(r[0]) for r in con.execute("SELECT path FROM sources ORDER BY path").fetchall()]
        rows = con.execute(
            """SELECT uri, document_version FROM (
                   SELECT uri, document_version, is_deleted FROM document_versions
                   QUALIFY row_number() OVER (PARTITION BY uri ORDER BY ingested_at DESC) = 1
               ) WHERE NOT is_deleted
               UNION ALL SELECT uri, document_version FROM quarantine"""
        ).fetchall()
    return folders, dict(rows)


def parse_cursor(cursor: str | None) -> tuple[int, str]:
    seq, _, fingerprint = (cursor or "0:").partition(":")
    return (int(seq) if seq.isdigit() else 0), fingerprint


def evaluate_corpus(cursor: str | None) -> dg.SensorResult | dg.SkipReason:
    """Decide whether the sources changed since the cursor, and name the change set against the warehouse
    (added, modified, deleted, moved) in the run's tags; the assets decide what to redo."""
    folders, known = known_sources()
    if not folders:
        return dg.SkipReason("no sources registered yet; run rag-platform refresh --source DIR")
    settings = load_settings()
    hashes = hash_sources(folders, settings.source.max_bytes)
    fingerprint = corpus_fingerprint(hashes.items())
    seq, previous = parse_cursor(cursor)
    if fingerprint == previous:
        return dg.SkipReason(f"no change in {len(hashes)} files under {len(folders)} source(s)")
    changes = source_changes(hashes, known)
    # The run key carries seq: run keys are deduplicated for the sensor's whole life, and a revert to an
    # earlier corpus state (A -> B -> A) must still trigger a run.
    next_seq = seq + 1
    tags = {"rag/trigger": "sensor", "rag/changes": changes.describe()}
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"{next_seq}:{fingerprint}", tags=tags)],
        cursor=f"{next_seq}:{fingerprint}",
    )


def build_corpus_sensor(interval_s: int) -> dg.SensorDefinition:
    @dg.sensor(
        job=refresh_job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Hashes every source file; requests a refresh when the corpus content changed.",
    )
    def corpus_changed_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        fail_dead_runs(context.instance)  # a dead STARTED run would hold the run queue (one at a time) forever
        return evaluate_corpus(context.cursor)

    return corpus_changed_sensor
