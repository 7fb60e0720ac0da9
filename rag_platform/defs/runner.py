"""Run the refresh job in-process against the platform's Dagster instance (the CLI's path into Dagster)."""

import functools
import os
import re
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import dagster as dg

from rag_platform.config import Settings
from rag_platform.dbt import ensure_manifest, preload_dbt
from rag_platform.defs.liveness import HELD, LIVENESS_TAG, fail_dead_runs, run_liveness
from rag_platform.defs.project import build_definitions
from rag_platform.defs.sensors import REBUILD_JOB, REFRESH_JOB
from rag_platform.environment import prepare_environment
from rag_platform.locking import lock_kind
from rag_platform.parts import RunParts


@dataclass(frozen=True, slots=True)
class JobOutcome:
    run_id: str
    success: bool
    failure: str | None
    stage_seconds: dict[str, float]


@functools.cache
def _definitions() -> dg.Definitions:
    return build_definitions()


def prepare_home(settings: Settings) -> None:
    """What loading the definitions needs and never does itself: the Dagster instance folder with its
    ``dagster.yaml``, and the dbt manifest (parsed once per version of the dbt project)."""
    prepare_environment(settings)
    ensure_manifest(settings.home)


def warm_up(settings: Settings) -> None:
    """Load what a run needs once in a long-lived process (definitions, dbt, GX, the index backend and the
    model), so its first run costs what later ones do."""
    prepare_home(settings)
    _definitions()
    preload_dbt()
    parts = RunParts.resolve(settings.home)
    parts.start_warmup()
    parts.close()


def execute_refresh(
    settings: Settings,
    full: bool,
    trigger: str = "cli",
    log_level: str = "WARNING",
    changes: str | None = None,
    embedding_model: str = "",
    min_gain: float | None = None,
) -> JobOutcome:
    """Execute the refresh (or rebuild) job in this process on ``settings.home``; its run shows in the UI's run
    history. The run resolves its own settings from that home once, when it starts.

    ``changes`` (the change set a trigger saw, e.g. "1 added, 0 modified, ...") becomes the run's
    ``rag/changes`` tag, as on sensor runs. ``log_level`` applies to Dagster's console logger only; the full
    event log is stored either way. ``embedding_model`` and ``min_gain`` make it a fine-tuning candidate's run
    (see ``PlatformResource``).
    """
    platform: dict[str, Any] = {"home": str(settings.home)}
    if embedding_model:
        platform.update(embedding_model=embedding_model, min_gain=min_gain)
    tags = {"rag/changes": changes} if changes else {}
    return execute_job(settings, REBUILD_JOB if full else REFRESH_JOB, trigger, log_level, platform, tags=tags)


def execute_job(
    settings: Settings,
    job_name: str,
    trigger: str,
    log_level: str,
    platform: dict[str, Any],
    ops: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> JobOutcome:
    """Execute one of the platform's jobs in this process, tagged (``tags`` on top of the platform's own) and
    holding its liveness lock."""
    prepare_home(settings)
    instance = dg.DagsterInstance.get()
    fail_dead_runs(instance, settings.lock_path)
    job = _definitions().resolve_job_def(job_name)
    run_id = str(uuid.uuid4())
    # The liveness lock is held before the run exists, so no checker ever sees this run STARTED without it.
    tags = {
        **(tags or {}),
        "rag/trigger": trigger,
        "rag/host": socket.gethostname(),
        "rag/pid": str(os.getpid()),  # for people reading the run; liveness never compares pids
        "rag/lock": lock_kind(),
        LIVENESS_TAG: HELD,
    }
    run_config: dict[str, Any] = {
        "loggers": {"console": {"config": {"log_level": log_level}}},
        "resources": {"platform": {"config": platform}},
    }
    if ops:
        run_config["ops"] = ops
    with run_liveness(instance, settings.lock_path, run_id):
        result = job.execute_in_process(
            instance=instance, run_id=run_id, raise_on_error=False, tags=tags, run_config=run_config
        )
    return JobOutcome(
        result.run_id,
        result.success,
        None if result.success else first_failure(result),
        stage_seconds(instance, result.run_id),
    )


def stage_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Wall time of each step of a run (one step per asset or dbt invocation), from its stored event log."""
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in started:
            seconds[event.step_key] = round(entry.timestamp - started[event.step_key], 3)
    return seconds


def first_failure(result: dg.ExecuteInProcessResult) -> str:
    """The root cause of the first failed step, as one line."""
    for event in result.all_events:
        data = event.event_specific_data
        error = getattr(data, "error", None) if event.event_type_value == "STEP_FAILURE" else None
        if error is None:
            continue
        while error.cause is not None:
            error = error.cause
        lines = [line for line in error.message.strip().splitlines() if line.strip()]
        message = lines[-1] if lines else error.cls_name
        message = re.sub(r"^rag_platform\.[\w.]+: ", "", message)  # our own errors read as sentences
        return f"{event.step_key}: {message}"
    return "the run did not succeed"
