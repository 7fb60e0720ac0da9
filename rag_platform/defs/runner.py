"""Run the refresh job in-process against the platform's Dagster instance (the CLI's path into Dagster)."""

import functools
import os
import re
from dataclasses import dataclass

import dagster as dg

from rag_platform.config import Settings
from rag_platform.dbt import ensure_manifest
from rag_platform.defs.project import build_definitions
from rag_platform.defs.sensors import REBUILD_JOB, REFRESH_JOB
from rag_platform.environment import prepare_environment
from rag_platform.locking import pid_alive


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


def execute_refresh(settings: Settings, full: bool, trigger: str = "cli", log_level: str = "WARNING") -> JobOutcome:
    """Execute the refresh (or rebuild) job in this process on ``settings.home``; its run shows in the UI's run
    history. The run resolves its own settings from that home once, when it starts.

    ``log_level`` applies to Dagster's console logger only; the full event log is stored either way.
    """
    prepare_home(settings)
    instance = dg.DagsterInstance.get()
    fail_orphaned_runs(instance)
    job = _definitions().resolve_job_def(REBUILD_JOB if full else REFRESH_JOB)
    result = job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags={"rag/pid": str(os.getpid()), "rag/trigger": trigger},
        run_config={
            "loggers": {"console": {"config": {"log_level": log_level}}},
            "resources": {"platform": {"config": {"home": str(settings.home)}}},
        },
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


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Runs started in-process by a process that has since died stay STARTED forever: mark them failed."""
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        pid = run.tags.get("rag/pid")
        if pid and pid.isdigit() and not pid_alive(int(pid)):
            instance.report_run_failed(run)
            failed.append(run.run_id)
    return failed
