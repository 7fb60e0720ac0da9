"""The warm watcher of `ui`/`demo`, with real file events, Dagster, dbt, GX, the bundled model and LanceDB: one
run for a burst of saves, none while another refresh is in flight, none for nothing, and a deletion reaches
the served index. Its runs are the refresh job's own runs, in the platform's Dagster instance."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from rag_platform.backends import make_backend
from rag_platform.config import load_settings

pytestmark = pytest.mark.slow


@pytest.fixture
def watcher(source: Path) -> Iterator[object]:
    from rag_platform.defs.watcher import SourceWatcher

    # A long rescan interval: every run below comes from a file event (or the look at start).
    w = SourceWatcher(load_settings(), debounce_s=0.3, rescan_s=3600)
    w.start(warm=False)
    yield w
    w.stop()


def served_sources(token: str) -> list[str]:
    settings = load_settings()
    backend = make_backend(settings)
    version = backend.resolve_alias(settings.index.alias)
    assert version is not None
    return sorted(Path(h.source).name for h in backend.search_keyword(version, token, 5) if token in h.text)


def sensor_skip() -> str | None:
    from rag_platform.defs.sensors import build_corpus_sensor

    context = dg.build_sensor_context(instance=dg.DagsterInstance.get(), cursor=None)
    data = build_corpus_sensor(30).evaluate_tick(context)
    assert not data.run_requests
    return data.skip_message


def test_watcher_runs_the_refresh_job_once_per_burst_and_never_beside_another_run(source: Path, watcher) -> None:
    from rag_platform.defs.sensors import REFRESH_JOB, build_corpus_sensor

    first = watcher.poll(5.0)  # the look at start: nothing indexed yet
    assert first is not None and first.outcome.success and first.changes.startswith("5 added")
    assert watcher.folders == {source}
    assert watcher.poll(1.0) is None  # the run's own writes and a rescan find nothing to do

    # A burst of saves (an editor writing one file repeatedly, and a new file) is one run that takes them all.
    token = "zq" + uuid.uuid4().hex[:8]
    baking = source / "baking.md"
    for i in range(5):
        baking.write_text(baking.read_text() + f"\nSave {i} mentions {token}.\n")
    (source / "tides.md").write_text(f"# Tides\n\nSpring tides and {token} neap tides.\n")
    # While the change is young and the watcher beats, the sensor (the daemon's backstop) leaves it alone.
    skip = sensor_skip()
    assert skip and "watcher" in skip
    burst = watcher.poll(5.0)
    assert burst is not None and burst.outcome.success
    assert burst.changes == "1 added, 1 modified, 0 deleted, 0 moved"
    assert served_sources(token) == ["baking.md", "tides.md"]
    assert watcher.poll(1.0) is None and len(watcher.runs) == 2
    run = dg.DagsterInstance.get().get_run_by_id(burst.outcome.run_id)
    assert run is not None and run.job_name == REFRESH_JOB and run.tags["rag/trigger"] == "watcher"
    assert run.tags["rag/changes"] == burst.changes
    # dbt ran in this process, and let go of the warehouse: another process can be its single writer now.
    opened = subprocess.run(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; duckdb.connect(sys.argv[1]).close()",
            str(load_settings().warehouse_path),
        ],
        capture_output=True,
        text=True,
    )
    assert opened.returncode == 0, opened.stderr

    # A refresh in flight (here one the daemon is about to launch) takes whatever it finds: no second run.
    instance = dg.DagsterInstance.get()
    queued = instance.add_run(
        dg.DagsterRun(job_name=REFRESH_JOB, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.NOT_STARTED)
    )
    (source / "tides.md").unlink()
    assert watcher.poll(2.0) is None and len(watcher.runs) == 2
    instance.delete_run(queued.run_id)

    # Once it is gone, the watcher's rescan takes the deletion, and it reaches the served index.
    deleted = watcher.poll(5.0)
    assert deleted is not None and deleted.outcome.success
    assert deleted.changes == "0 added, 0 modified, 1 deleted, 0 moved"
    assert served_sources(token) == ["baking.md"]

    # Without a live watcher, an unindexed change is the sensor's again.
    watcher.stop()
    (source / "tides.md").write_text(f"# Tides\n\nBack again: {token}.\n")
    context = dg.build_sensor_context(instance=instance, cursor=None)
    assert len(build_corpus_sensor(30).evaluate_tick(context).run_requests or []) == 1
