"""Without PostgreSQL (SQLite instance, flock locks): a refresh killed mid-run leaves its Dagster run STARTED; the
next refresh finds that run's liveness lock free and marks it failed, then succeeds. Also the lock primitives."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
from shared_env import inherited_environment

from rag_platform.locking import RunLiveness, refresh_lock, run_is_alive

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


def test_liveness_lock_is_seen_held_then_free(tmp_path: Path) -> None:
    lock_path = tmp_path / "refresh.lock"
    assert run_is_alive(lock_path, "never-started") is None
    live = RunLiveness(lock_path, "run-1")
    probe = [
        sys.executable,
        "-c",
        f"from rag_platform.locking import run_is_alive; from pathlib import Path; "
        f"print(run_is_alive(Path({str(lock_path)!r}), 'run-1'))",
    ]
    assert subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip() == "True"
    live.release()
    assert run_is_alive(lock_path, "run-1") is None  # a clean end removes the lock file


def test_waiter_names_the_holder(tmp_path: Path) -> None:
    lock_path = tmp_path / "refresh.lock"
    messages: list[str] = []

    def wait_for_lock() -> None:
        with refresh_lock(lock_path, on_wait=messages.append):
            pass

    with refresh_lock(lock_path, run_id="run-a"):
        waiter = threading.Thread(target=wait_for_lock)
        # flock is per open file description: a second open in this process waits like another process would.
        waiter.start()
        time.sleep(0.6)
    waiter.join(5)
    assert not waiter.is_alive()
    assert len(messages) == 1 and "run run-a, since " in messages[0] and "pid " in messages[0]


@pytest.mark.slow
def test_killed_refresh_run_is_failed_by_the_next(tmp_path: Path, tiny_model_dir: Path) -> None:
    home = tmp_path / "home"
    env = inherited_environment() | {
        "RAG_PLATFORM_HOME": str(home),
        "RAG_PLATFORM__EMBEDDING__MODEL": str(tiny_model_dir),
    }

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "rag_platform.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env | extra, cwd=tmp_path, timeout=600)

    killed = cli("refresh", "--source", str(CORPUS), "--json", RAG_PLATFORM_FAULT="embed:1")
    assert killed.returncode == -9, killed.stderr[-2000:]
    again = cli("refresh", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = {r.run_id: r for r in instance.get_runs()}
        statuses = sorted(r.status.value for r in runs.values())
        assert statuses == ["FAILURE", "SUCCESS"]
        assert runs[json.loads(again.stdout)["run_id"]].status == dg.DagsterRunStatus.SUCCESS
        (dead,) = [r for r in runs.values() if r.status == dg.DagsterRunStatus.FAILURE]
        assert dead.tags["rag/liveness"] == "held" and dead.tags["rag/lock"] == "flock"
