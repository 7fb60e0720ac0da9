"""The refresh job every path runs (CLI, sensor, UI), and the sensor that notices source changes."""

import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from rag_platform.change_detection import PendingChanges, pending_changes, warehouse_documents, watcher_takes
from rag_platform.config import Settings, load_settings
from rag_platform.defs.ingest import FULL_TAG
from rag_platform.defs.liveness import fail_dead_runs

REFRESH_JOB = "refresh_index"
REBUILD_JOB = "rebuild_index"
FINETUNE_JOB = "finetune_model"
# Fine-tuning runs on request (``rag-platform finetune``), never as part of a refresh.
INDEX_ASSETS = dg.AssetSelection.all() - dg.AssetSelection.groups("finetune")

# One process per run: the refresh lock resource then spans the whole run, and steps share the loaded model.
refresh_job = dg.define_asset_job(
    REFRESH_JOB,
    selection=INDEX_ASSETS,
    executor_def=dg.in_process_executor,
    description="Ingest, transform, chunk, embed and index what changed, then refresh the standing queries.",
)
rebuild_job = dg.define_asset_job(
    REBUILD_JOB,
    selection=INDEX_ASSETS,
    executor_def=dg.in_process_executor,
    tags={FULL_TAG: "true"},
    description="Re-chunk everything and build a new index version beside the served one; publish when gates pass.",
)

finetune_job = dg.define_asset_job(
    FINETUNE_JOB,
    selection=dg.AssetSelection.groups("finetune"),
    executor_def=dg.in_process_executor,
    description="Fine-tune the embedding model on the served corpus (rag-platform finetune then builds, scores "
    "and maybe publishes a candidate index version with it through the refresh job).",
)


# Runs that will take whatever is on disk when they ingest: while one waits or runs, the sensor asks for none.
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
RUN_LOG_LEVEL_ENV = "RAG_PLATFORM_RUN_LOG_LEVEL"


def refresh_in_flight(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    """A refresh or rebuild run that is queued or running (from the CLI, the UI or this sensor). Call
    ``fail_dead_runs`` first: a run whose process died is then failed, not in flight."""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT), limit=20):
        if run.job_name in (REFRESH_JOB, REBUILD_JOB):
            return run
    return None


def parse_cursor(cursor: str | None) -> tuple[int, str]:
    seq, _, fingerprint = (cursor or "0:").partition(":")
    return (int(seq) if seq.isdigit() else 0), fingerprint


@dataclass(frozen=True, slots=True)
class SourceCheck:
    """What a trigger (sensor or watcher) found: the registered folders, and either the sources' pending
    changes or why there is nothing to compare (``reason``: no source yet, or a refresh in flight)."""

    folders: list[Path]
    pending: PendingChanges | None = None
    running: dg.DagsterRun | None = None
    reason: str = ""


def check_sources(settings: Settings, instance: dg.DagsterInstance) -> SourceCheck:
    """Fail runs whose process died, then compare the sources with the warehouse unless a refresh is queued or
    running (that run will take whatever is on disk when it ingests)."""
    fail_dead_runs(instance, settings.lock_path)  # a dead STARTED run would hold the run queue forever
    state = warehouse_documents(settings)
    if state is None or not state[0]:
        return SourceCheck([], reason="no sources registered yet; run rag-platform refresh --source DIR")
    folders, known = state
    running = refresh_in_flight(instance)
    if running is not None:
        reason = f"run {running.run_id[:8]} ({running.status.value.lower()}) will take any change"
        return SourceCheck(folders, running=running, reason=reason)
    return SourceCheck(folders, pending=pending_changes(settings, known, folders))


def evaluate_corpus(cursor: str | None, instance: dg.DagsterInstance) -> dg.SensorResult | dg.SkipReason:
    """Request a refresh only for a change the warehouse does not hold yet, once per corpus state, and never
    while a refresh is queued or running (the cursor then stays, so edits made meanwhile become one run).
    The run's tags name the change set (added, modified, deleted, moved); the assets decide what to redo."""
    settings = load_settings()
    check = check_sources(settings, instance)
    if check.pending is None:
        return dg.SkipReason(check.reason)
    pending = check.pending
    seq, previous = parse_cursor(cursor)
    seen = f"{pending.files} files under {len(pending.folders)} source(s), {pending.hashed} hashed"
    if pending.empty:
        return dg.SensorResult(
            skip_reason=f"no change: {seen}; the warehouse holds every one", cursor=f"{seq}:{pending.fingerprint}"
        )
    if watcher_takes(settings, pending):
        # `ui`/`demo` refresh in their own warm process when files change; a change they missed gets old.
        return dg.SkipReason(f"the watcher of a running ui takes this change ({pending.changes.describe()})")
    if pending.fingerprint == previous:
        # A run was requested for exactly this state and did not take it (it failed): wait for a new change
        # instead of failing again every tick.
        return dg.SkipReason(f"a run was already requested for this state ({pending.changes.describe()})")
    # The run key carries seq: run keys are deduplicated for the sensor's whole life, and a revert to an
    # earlier corpus state (A -> B -> A) must still trigger a run.
    key = f"{seq + 1}:{pending.fingerprint}"
    tags = {"rag/trigger": "sensor", "rag/changes": pending.changes.describe()}
    log_level = os.environ.get(RUN_LOG_LEVEL_ENV, "WARNING")
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=key, tags=tags, run_config=run_config)], cursor=key)


def build_corpus_sensor(interval_s: int) -> dg.SensorDefinition:
    @dg.sensor(
        job=refresh_job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests a refresh when the sources differ from what the warehouse holds (files are hashed "
        "only when their size, mtime or inode changed).",
    )
    def corpus_changed_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        return evaluate_corpus(context.cursor, context.instance)

    return corpus_changed_sensor


def finished_runs(after: float) -> tuple[list[str], float]:
    """One line per refresh or rebuild run that finished after ``after`` (a timestamp), oldest first, and the
    latest finish time seen: what ``demo`` and ``ui`` print while they serve."""
    instance = dg.DagsterInstance.get()
    done = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
    records = instance.get_run_records(filters=dg.RunsFilter(statuses=done), limit=20)
    lines, latest = [], after
    for record in sorted(records, key=lambda r: r.end_time or 0):
        end = record.end_time or 0
        run = record.dagster_run
        if end <= after or run.job_name not in (REFRESH_JOB, REBUILD_JOB):
            continue
        latest = max(latest, end)
        took = f"{end - record.start_time:.1f} s" if record.start_time else "?"
        trigger = run.tags.get("rag/trigger", "ui")
        changes = run.tags.get("rag/changes", "")
        lines.append(
            f"run {run.run_id[:8]} ({trigger}) {run.status.value.lower()} in {took}"
            + (f": {changes}" if changes else "")
        )
    return lines, latest


def run_seconds(run_id: str) -> float | None:
    """A finished run's duration in the platform's Dagster instance, start to end (None when unknown)."""
    record = dg.DagsterInstance.get().get_run_record_by_id(run_id)
    if record is None or not record.start_time or not record.end_time:
        return None
    return round(record.end_time - record.start_time, 3)


def runs_by_trigger() -> dict[str, int]:
    """How many refresh or rebuild runs the platform's Dagster instance holds, by ``rag/trigger`` tag."""
    counts: dict[str, int] = {}
    for run in dg.DagsterInstance.get().get_runs(limit=10_000):
        if run.job_name in (REFRESH_JOB, REBUILD_JOB):
            trigger = run.tags.get("rag/trigger", "ui")
            counts[trigger] = counts.get(trigger, 0) + 1
    return counts
