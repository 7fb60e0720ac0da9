"""The change-detection sensor with real Dagster ticks: a run only for a change the warehouse does not hold, once."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from rag_platform import warehouse
from rag_platform.config import load_settings
from rag_platform.ingest import ingest_sources
from rag_platform.sources import source_changes


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def evaluate(instance: dg.DagsterInstance, cursor: str | None) -> tuple[list[dg.RunRequest], str | None, str | None]:
    """One real tick of the sensor."""
    from rag_platform.defs.sensors import build_corpus_sensor

    sensor = build_corpus_sensor(30)
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    data = sensor.evaluate_tick(context)
    return list(data.run_requests or []), data.cursor, data.skip_message


def take_changes(source: Path) -> None:
    """Bring the warehouse (and its read snapshot) in line with ``source``, as a refresh's ingest does."""
    settings = load_settings()
    with warehouse.writer(settings) as con:
        ingest_sources(con, [source], f"run-{uuid.uuid4().hex[:8]}", settings.source.max_bytes)
    warehouse.export_snapshot(settings)


def test_sensor_requests_once_per_change(source: Path, instance: dg.DagsterInstance) -> None:
    requests, cursor, _ = evaluate(instance, None)
    assert len(requests) == 1 and cursor and requests[0].run_key == cursor
    # The same state again (its run has not taken it, e.g. it failed): no second run for one change.
    again, same_cursor, skip = evaluate(instance, cursor)
    assert again == [] and same_cursor in (None, cursor) and skip and "already requested" in skip

    original = (source / "baking.md").read_text()
    (source / "baking.md").write_text(original + "\nMore text.\n")
    changed, cursor2, _ = evaluate(instance, cursor)
    assert len(changed) == 1 and changed[0].run_key != requests[0].run_key

    (source / "baking.md").write_text(original)  # revert: A -> B -> A must still trigger
    reverted, cursor3, _ = evaluate(instance, cursor2)
    assert len(reverted) == 1
    assert reverted[0].run_key.split(":", 1)[1] == requests[0].run_key.split(":", 1)[1]
    assert reverted[0].run_key != requests[0].run_key

    (source / "guides" / "volcanoes.md").unlink()
    deleted, _, _ = evaluate(instance, cursor3)
    assert len(deleted) == 1


def test_sensor_skips_without_sources(platform_home: Path, instance: dg.DagsterInstance) -> None:
    requests, _, skip = evaluate(instance, None)
    assert requests == [] and skip and "no sources" in skip


def test_sensor_skips_a_change_the_warehouse_already_holds(source: Path, instance: dg.DagsterInstance) -> None:
    """Regression: right after a CLI refresh the sensor's first tick started a run tagged
    "0 added, 0 modified, 0 deleted, 0 moved"; an empty change set is now a skip that moves the cursor."""
    take_changes(source)
    requests, cursor, skip = evaluate(instance, None)
    assert requests == [] and skip and skip.startswith("no change")
    assert cursor and cursor.startswith("0:")

    (source / "baking.md").write_text((source / "baking.md").read_text() + "\nMore text.\n")
    (source / "guides" / "volcanoes.md").rename(source / "volcanoes.md")
    (source / "chess.txt").unlink()
    (source / "new.md").write_text("# New\n\nA page that was not there before.\n")
    changed, cursor2, _ = evaluate(instance, cursor)
    assert len(changed) == 1
    assert changed[0].tags["rag/changes"] == "1 added, 1 modified, 1 deleted, 1 moved"

    take_changes(source)  # a CLI refresh took the change before the requested run started
    again, cursor3, skip = evaluate(instance, cursor2)
    assert again == [] and skip and skip.startswith("no change") and cursor3 == cursor2


def test_sensor_waits_while_a_refresh_is_queued_or_running(source: Path, instance: dg.DagsterInstance) -> None:
    """Regression: while a CLI refresh ran, the sensor queued a second run for the same change. Now it skips
    and keeps its cursor, so edits made meanwhile are compared with the warehouse once the run is done."""
    from rag_platform.defs.sensors import REFRESH_JOB

    _, cursor, _ = evaluate(instance, None)
    (source / "new.md").write_text("# New\n\nA page that was not there before.\n")
    # (A QUEUED run needs a code location origin to be stored; the sensor treats every status alike.)
    for status in (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTED):
        run = instance.add_run(dg.DagsterRun(job_name=REFRESH_JOB, run_id=str(uuid.uuid4()), status=status))
        requests, kept, skip = evaluate(instance, cursor)
        assert requests == [] and kept in (None, cursor) and skip and run.run_id[:8] in skip
        instance.report_run_canceled(run)
    requests, _, _ = evaluate(instance, cursor)
    assert len(requests) == 1


def test_a_dead_cli_run_does_not_hold_the_sensor_back(source: Path, instance: dg.DagsterInstance) -> None:
    """A STARTED run whose process is gone (its liveness lock is free) is failed, then the change is requested;
    a run whose lock is held still holds the sensor back."""
    from rag_platform.defs.liveness import HELD, LIVENESS_TAG
    from rag_platform.defs.sensors import REFRESH_JOB
    from rag_platform.locking import RunLiveness

    (source / "new-note.md").write_text("# New note\n\nA change the warehouse does not hold yet.\n")
    lock_path = load_settings().lock_path
    alive, dead = (
        dg.DagsterRun(
            job_name=REFRESH_JOB,
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={LIVENESS_TAG: HELD},
        )
        for _ in range(2)
    )
    instance.add_run(alive)
    live = RunLiveness(lock_path, alive.run_id)
    try:
        requests, _, skipped = evaluate(instance, None)
        assert requests == [] and skipped is not None and alive.run_id[:8] in skipped
    finally:
        live.release()
    instance.report_run_canceled(alive)
    instance.add_run(dead)
    # The dead run's process took its liveness lock and was killed: the lock file stays, nobody holds it.
    grab = "from pathlib import Path; from rag_platform.locking import RunLiveness; import os; "
    grab += f"RunLiveness(Path({str(lock_path)!r}), {dead.run_id!r}); os.kill(os.getpid(), 9)"
    subprocess.run([sys.executable, "-c", grab], check=False)
    requests, _, _ = evaluate(instance, None)
    assert len(requests) == 1
    failed = instance.get_run_by_id(dead.run_id)
    assert failed is not None and failed.status == dg.DagsterRunStatus.FAILURE


def test_source_changes_pairs_each_vanished_document_with_at_most_one_move() -> None:
    known = {"a": "h1", "b": "h2", "c": "h3", "q": None}
    on_disk = {"a": "h1", "b": "h9", "a-copy": "h1", "c-new": "h3", "c-copy": "h3", "q": "unreadable:9"}
    changes = source_changes(on_disk, known)
    assert changes.moved == (("c", "c-copy"),)
    assert changes.added == ("a-copy", "c-new")
    assert changes.modified == ("b",) and changes.deleted == ()


def test_freshness_is_the_lag_of_unindexed_changes(source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quiet corpus the warehouse holds is fresh however long ago it was refreshed; a change waiting longer
    than sensor.max_staleness_s is not."""
    import os
    import time

    from rag_platform.defs.project import search_index_reflects_sources

    take_changes(source)
    result = search_index_reflects_sources()
    assert result.passed and result.metadata["pending"].value == "0 added, 0 modified, 0 deleted, 0 moved"

    target = source / "baking.md"
    target.write_text(target.read_text() + "\nA change nobody indexed.\n")
    three_hours_ago = time.time() - 3 * 3600
    os.utime(target, (three_hours_ago, three_hours_ago))
    assert search_index_reflects_sources().passed  # within the default day
    monkeypatch.setenv("RAG_PLATFORM__SENSOR__MAX_STALENESS_S", "3600")
    late = search_index_reflects_sources()
    assert not late.passed and late.metadata["oldest_pending_change_s"].value >= 3 * 3600 - 60
