"""Run safety across PID namespaces: refreshes in separate namespaces (as in separate containers) share one
PostgreSQL-backed Dagster instance and one platform home. They serialize on the advisory lock, neither marks the
other failed, and one that is SIGKILLed while PID 1 of its namespace is marked failed by the next refresh."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from pg_tools import Database, Postgres
from shared_env import inherited_environment

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("pid_namespaces")]


def in_namespace(home: Path, url: str, *args: str) -> subprocess.Popen[str]:
    """``rag-platform ARGS`` as PID 1 of a new PID namespace (its own /proc), like a `docker compose run`."""
    env = inherited_environment() | {"RAG_PLATFORM_HOME": str(home), "RAG_PLATFORM_DAGSTER_PG_URL": url}
    command = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "rag_platform.cli", *args]
    return subprocess.Popen(
        command, env=env, cwd=home.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def finish(process: subprocess.Popen[str], timeout_s: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout_s)
    return process.returncode, out, err


def test_refreshes_in_separate_pid_namespaces_serialize_and_a_killed_one_is_failed(
    tmp_path: Path, postgres: Postgres
) -> None:
    url = postgres.new_database()
    db = Database(url)
    home = tmp_path / "home"
    source = tmp_path / "corpus"
    shutil.copytree(CORPUS, source)

    # A registers the source and starts; B starts while A holds the refresh lock.
    a = in_namespace(home, url, "refresh", "--source", str(source), "--json")
    # (Registering the source takes the lock briefly without a run: wait for the run to hold it.)
    holder = wait_for(lambda: (h := db.lock_holder()) and h[2] != "-" and h, 300, "A's run to take the refresh lock")
    assert holder is not None
    a_run = str(holder[2])
    assert holder[1] == 1, holder  # A is PID 1 in its namespace, as every `docker compose run` is
    b = in_namespace(home, url, "refresh", "--json")
    # B's run exists (STARTED) and waits on the lock inside the run: both runs are STARTED at once.
    wait_for(lambda: list(db.runs().values()).count("STARTED") == 2, 120, "both runs to be STARTED")
    a_code, a_out, a_err = finish(a)
    b_code, b_out, b_err = finish(b)
    assert a_code == 0, a_err[-3000:]
    assert b_code == 0, b_err[-3000:]
    a_summary, b_summary = json.loads(a_out), json.loads(b_out)
    assert a_summary["run_id"] == a_run
    # The waiting refresh said, in one stderr line, who held the lock: host, pid 1, A's run id, since when.
    waits = [line for line in b_err.splitlines() if "holds the refresh lock" in line]
    assert len(waits) == 1 and f"pid 1, run {a_run}, since " in waits[0], b_err[-3000:]
    # Neither marked the other failed: each event log reads START ... SUCCESS, nothing else.
    for run_id in (a_run, b_summary["run_id"]):
        assert db.events(run_id) == ["RUN_START", "RUN_SUCCESS"], (run_id, db.events(run_id))
    # B ran after A, not beside it: B's work all saw A's documents as already there.
    files = sum(1 for p in source.rglob("*") if p.is_file())
    assert a_summary["documents"]["added"] + a_summary["documents"]["quarantined"] == files
    assert b_summary["documents"]["added"] == 0 and b_summary["documents"]["unchanged"] >= 1

    # C: a full rebuild, SIGKILLed from outside while it holds the lock as PID 1 of its namespace.
    (source / "baking.md").write_text("# Bread\n\nKnead the dough, rest it, bake it hot.\n", encoding="utf-8")
    c = in_namespace(home, url, "refresh", "--full", "--json")
    holder = wait_for(
        lambda: (h := db.lock_holder()) and h[2] not in (a_run, b_summary["run_id"]) and h, 300, "C to hold the lock"
    )
    c_run = str(holder[2])  # type: ignore[index]
    (pid1,) = psutil.Process(c.pid).children()  # unshare forked it; it is PID 1 inside
    os.kill(pid1.pid, signal.SIGKILL)
    c_code, _, _ = finish(c, 60)
    assert c_code != 0
    assert db.runs()[c_run] == "STARTED"  # nothing cleaned up after it yet
    wait_for(lambda: db.lock_holder() is None, 30, "the server to release the dead session's lock")

    # D, in yet another namespace: marks C failed (its liveness lock is free) and refreshes.
    d_code, d_out, d_err = finish(in_namespace(home, url, "refresh", "--json"))
    assert d_code == 0, d_err[-3000:]
    d_summary = json.loads(d_out)
    assert db.runs()[c_run] == "FAILURE"
    assert db.events(c_run) == ["RUN_START", "RUN_FAILURE"]
    assert db.events(d_summary["run_id"]) == ["RUN_START", "RUN_SUCCESS"]
    assert d_summary["published"] and d_summary["index"]["count"] > 0
    assert db.tags(d_summary["run_id"])["rag/liveness"] == "released"
