"""Dead-run detection through each run's liveness lock (``rag_platform.locking``), not through process ids.

A run tagged ``rag/liveness=held`` has a process holding its liveness lock. When no one holds that lock, the
process is gone (killed, its container or host lost): the run is marked failed, so the run queue and the UI move
on. Works across PID namespaces and, on PostgreSQL, across hosts; never fails a live run elsewhere.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from rag_platform.config import load_settings
from rag_platform.locking import RunLiveness, run_is_alive

LIVENESS_TAG = "rag/liveness"
HELD, RELEASED = "held", "released"

# Liveness locks this process holds, by run id: the CLI takes one before the run exists, the run's resource then
# finds it here instead of taking a second.
_held: dict[str, RunLiveness] = {}


@contextmanager
def run_liveness(instance: dg.DagsterInstance, lock_path: Path, run_id: str) -> Iterator[None]:
    """Hold ``run_id``'s liveness lock; tag the run ``held`` once it is (and ``released`` just before letting go,
    so a checker that then finds the lock free knows the run ended cleanly)."""
    if run_id in _held:
        yield
        return
    _held[run_id] = live = RunLiveness(lock_path, run_id)
    try:
        if instance.get_run_by_id(run_id) is not None:
            instance.add_run_tags(run_id, {LIVENESS_TAG: HELD})
        yield
    finally:
        try:
            if instance.get_run_by_id(run_id) is not None:
                instance.add_run_tags(run_id, {LIVENESS_TAG: RELEASED})
        finally:
            del _held[run_id]
            live.release()


def fail_dead_runs(instance: dg.DagsterInstance, lock_path: Path | None = None) -> list[str]:
    """Mark failed each STARTED run whose process no longer holds its liveness lock. Returns their run ids."""
    lock_path = lock_path or load_settings().lock_path
    failed = []
    started = instance.get_runs(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED], tags={LIVENESS_TAG: HELD})
    )
    for run in started:
        if run.run_id in _held or run_is_alive(lock_path, run.run_id) is not False:
            continue
        # The lock was free: either the process died, or it ended cleanly and re-tagged the run first.
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status != dg.DagsterRunStatus.STARTED or current.tags.get(LIVENESS_TAG) != HELD:
            continue
        host = current.tags.get("rag/host", "unknown host")
        instance.report_run_failed(
            current, message=f"the process running this run on {host} is gone (its liveness lock was free)"
        )
        failed.append(run.run_id)
    return failed
