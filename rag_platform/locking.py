"""The refresh lock, and each run's liveness lock.

The refresh lock is held for a whole refresh run, whatever started it (CLI, sensor, UI), so two refreshes never
interleave their writes. Where it lives follows the Dagster instance:

- on PostgreSQL (``RAG_PLATFORM_DAGSTER_PG_URL`` set): a session-level advisory lock on a dedicated connection, so
  it excludes refreshes on every host and in every PID namespace that share the database;
- otherwise an OS advisory lock (flock) on a file under the platform home: one kernel only.

Either way the lock dies with its holder (the server ends a dead client's session; the kernel closes a dead
process's files), so a killed run never leaves a stale lock. The same mechanism gives each run a *liveness lock*
held by the process executing it: a run whose liveness lock nobody holds has no process left, on any host. That is
how dead runs are found; no process id is compared with another's.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag_platform.config import ConfigError
from rag_platform.environment import PG_URL_ENV, PostgresTarget, postgres_target

logger = logging.getLogger(__name__)

# Advisory lock keys are (namespace, key) int4 pairs; the namespace keeps ours apart from other users of the database.
NAMESPACE = zlib.crc32(b"rag-platform") & 0x7FFFFFFF
REFRESH_KEY = zlib.crc32(b"refresh") & 0x7FFFFFFF
HOLDERS_TABLE = "rag_platform_lock_holders"
POLL_S = 0.2


class LockTimeout(RuntimeError):
    """Another refresh held the lock longer than we were willing to wait."""


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the refresh lock: host and pid as the holder sees them, its run id and since when."""

    host: str
    pid: int
    run_id: str
    since: str

    @classmethod
    def me(cls, run_id: str | None) -> Holder:
        since = datetime.now(UTC).isoformat(timespec="seconds")
        return cls(socket.gethostname(), os.getpid(), run_id or "-", since)

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}, run {self.run_id}, since {self.since}"


def lock_kind() -> str:
    """``postgres`` when the instance (and so the locks) are on PostgreSQL, else ``flock``."""
    return "postgres" if postgres_target() is not None else "flock"


def _announce(on_wait: Callable[[str], object] | None, holder: Holder | None) -> None:
    who = holder.describe() if holder else "a holder that has not said who it is yet"
    message = f"another refresh holds the refresh lock ({who}); waiting for it to finish"
    if on_wait is not None:
        on_wait(message)
    else:
        logger.warning(message)


@contextmanager
def refresh_lock(
    path: Path,
    timeout_s: float = 3600.0,
    on_wait: Callable[[str], object] | None = None,
    run_id: str | None = None,
) -> Iterator[None]:
    """Hold the platform's refresh lock; a waiter says once (``on_wait``, else a log warning) who holds it."""
    target = postgres_target()
    if target is not None:
        with _pg_refresh_lock(target, timeout_s, on_wait, Holder.me(run_id)):
            yield
    else:
        with _flock_refresh_lock(path, timeout_s, on_wait, Holder.me(run_id)):
            yield


# ---- flock (one kernel) -----------------------------------------------------------------------------------


@contextmanager
def _flock_refresh_lock(
    path: Path, timeout_s: float, on_wait: Callable[[str], object] | None, me: Holder
) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    _announce(on_wait, _read_holder(os.pread(fd, 4096, 0)))
                    announced = True
                if time.monotonic() > deadline:
                    raise LockTimeout(f"another refresh held {path.name} for over {timeout_s:.0f}s") from None
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_as_dict(me)).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _as_dict(holder: Holder) -> dict[str, Any]:
    return {"host": holder.host, "pid": holder.pid, "run_id": holder.run_id, "since": holder.since}


def _read_holder(raw: bytes) -> Holder | None:
    try:
        data = json.loads(raw.decode())
        return Holder(str(data["host"]), int(data["pid"]), str(data["run_id"]), str(data["since"]))
    except (ValueError, KeyError, TypeError):
        return None


def _run_lock_file(lock_path: Path, run_id: str) -> Path:
    return lock_path.parent / "run-locks" / f"{run_id}.lock"


# ---- PostgreSQL (every host on the database) ---------------------------------------------------------------


def _connect(target: PostgresTarget, purpose: str) -> Any:
    """A dedicated autocommit connection whose session (and so whose advisory locks) ends when this process dies."""
    try:
        import psycopg2
    except ImportError:
        raise ConfigError(f"{PG_URL_ENV} needs PostgreSQL support: pip install 'rag-platform[postgres]'") from None
    try:
        con = psycopg2.connect(
            **target.connect_kwargs(),
            application_name=f"rag-platform {purpose}",
            connect_timeout=10,
            # Client side: notice a vanished server. Server side (below): end the session of a vanished host, and
            # with it its locks, within about a minute instead of the kernel's two hours.
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
    except psycopg2.OperationalError as exc:
        # psycopg2's message names host and port, never the password.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeError(f"cannot reach the Dagster PostgreSQL at {target.redacted()}: {first}") from None
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute("SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3")
    return con


def _ensure_holders_table(cur: Any) -> None:
    cur.execute("BEGIN")
    cur.execute("SELECT pg_advisory_xact_lock(%s, 0)", (NAMESPACE,))  # concurrent CREATEs would race on pg_type
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS {HOLDERS_TABLE} (backend_pid integer PRIMARY KEY, host text NOT NULL, "
        "pid integer NOT NULL, run_id text NOT NULL, since text NOT NULL)"
    )
    cur.execute("COMMIT")


def _pg_holder(cur: Any) -> Holder | None:
    cur.execute(
        f"SELECT h.host, h.pid, h.run_id, h.since FROM pg_locks l JOIN {HOLDERS_TABLE} h ON h.backend_pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 2",
        (NAMESPACE, REFRESH_KEY),
    )
    row = cur.fetchone()
    return Holder(row[0], int(row[1]), row[2], row[3]) if row else None


@contextmanager
def _pg_refresh_lock(
    target: PostgresTarget, timeout_s: float, on_wait: Callable[[str], object] | None, me: Holder
) -> Iterator[None]:
    con = _connect(target, "refresh lock")
    try:
        with con.cursor() as cur:
            _ensure_holders_table(cur)
            deadline = time.monotonic() + timeout_s
            announced = False
            while True:
                cur.execute("SELECT pg_try_advisory_lock(%s, %s)", (NAMESPACE, REFRESH_KEY))
                if cur.fetchone()[0]:
                    break
                if not announced:
                    _announce(on_wait, _pg_holder(cur))
                    announced = True
                if time.monotonic() > deadline:
                    raise LockTimeout(f"another refresh held the refresh lock for over {timeout_s:.0f}s")
                time.sleep(POLL_S)
            # Rows of sessions that are gone (their holders died) are dropped; ours says who we are.
            cur.execute(
                f"DELETE FROM {HOLDERS_TABLE} WHERE backend_pid = pg_backend_pid() "
                "OR backend_pid NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)"
            )
            cur.execute(
                f"INSERT INTO {HOLDERS_TABLE} VALUES (pg_backend_pid(), %s, %s, %s, %s)",
                (me.host, me.pid, me.run_id, me.since),
            )
        yield
        with con.cursor() as cur:
            cur.execute(f"DELETE FROM {HOLDERS_TABLE} WHERE backend_pid = pg_backend_pid()")
    finally:
        con.close()  # ending the session releases the advisory lock


def _run_key(run_id: str) -> int:
    """A signed 64-bit advisory key for a run id (the single-bigint key space, apart from the int4 pairs)."""
    return int.from_bytes(hashlib.sha256(f"rag-platform run {run_id}".encode()).digest()[:8], "big", signed=True)


# ---- run liveness -----------------------------------------------------------------------------------------


class RunLiveness:
    """The liveness lock of one run, held by the process that executes it until :meth:`release`."""

    def __init__(self, lock_path: Path, run_id: str):
        self.run_id = run_id
        self.kind = lock_kind()
        self._con: Any = None
        self._fd: int | None = None
        self._file = _run_lock_file(lock_path, run_id)
        target = postgres_target()
        if target is not None:
            self._con = _connect(target, f"run {run_id}")
            with self._con.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", (_run_key(run_id),))  # unique per run: never waits
        else:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._file, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        if self._fd is not None:
            self._file.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


def run_is_alive(lock_path: Path, run_id: str) -> bool | None:
    """Whether some process (on any host sharing the lock) still holds ``run_id``'s liveness lock.

    True: held. False: nobody holds it, the run's process is gone. None: cannot tell (no lock file: the run never
    took one here, or it ended cleanly)."""
    target = postgres_target()
    if target is not None:
        con = _connect(target, "liveness check")
        try:
            with con.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (_run_key(run_id),))
                if not cur.fetchone()[0]:
                    return True
                cur.execute("SELECT pg_advisory_unlock(%s)", (_run_key(run_id),))
                return False
        finally:
            con.close()
    path = _run_lock_file(lock_path, run_id)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)
    return False
