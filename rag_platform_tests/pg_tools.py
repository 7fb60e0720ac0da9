"""A real PostgreSQL server for tests, from the ``pgserver`` wheel (CI needs nothing else), and a reader for the
Dagster instance's tables.

pgserver initialises the data folder (as an unprivileged system user when the tests run as root) and starts it on
a socket with trust auth; ``start_postgres`` then gives it a password-checked TCP listener on 127.0.0.1, so the
platform connects as it would to a real deployment: ``postgresql://USER:PASSWORD@HOST:PORT/DB``.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg2
import psycopg2.errors


@dataclass
class Postgres:
    port: int
    user: str
    password: str
    admin: str  # a socket URL with trust auth, for creating databases

    def new_database(self) -> str:
        """A fresh database owned by the test role; returns its URL (the password needs URL quoting)."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        con = psycopg2.connect(self.admin)
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}" OWNER "{self.user}"')
        con.close()
        return f"postgresql://{self.user}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{name}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def start_postgres() -> Iterator[Postgres]:
    import pgserver

    base = Path(tempfile.mkdtemp(prefix="rag-pg-"))  # short: the socket path must fit in 107 bytes
    pgdata = base / "data"
    pgdata.mkdir()
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    user, password = "rag", f"pw:{secrets.token_hex(8)}@/#"  # characters that need quoting in a URL
    server.psql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}';")
    (pgdata / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n", encoding="utf-8"
    )
    run_as = {"user": server.system_user} if server.system_user else {}
    pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, **run_as)
    port = _free_port()
    options = ["-o", "-h 127.0.0.1", "-o", f"-p {port}", "-o", f"-k {pgdata}", "-o", "-c max_connections=200"]
    pgserver.pg_ctl(["-w", *options, "-l", str(pgdata / "log"), "start"], pgdata=pgdata, timeout=60, **run_as)
    admin = f"postgresql://postgres@/postgres?host={pgdata}&port={port}"
    try:
        yield Postgres(port, user, password, admin)
    finally:
        pgserver.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pgdata, **run_as)


def unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Database:
    """Read the Dagster instance's tables directly, as an operator would with psql."""

    def __init__(self, url: str):
        from rag_platform.environment import parse_pg_url

        self.target = parse_pg_url(url)

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        con = psycopg2.connect(**self.target.connect_kwargs())
        try:
            with con.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall()) if cur.description else []
        except psycopg2.errors.UndefinedTable:
            return []
        finally:
            con.close()

    def runs(self) -> dict[str, str]:
        return {str(r): str(s) for r, s in self.query("SELECT run_id, status FROM runs ORDER BY create_timestamp")}

    def events(self, run_id: str) -> list[str]:
        """The run-level events of a run, in order (stored under their legacy PIPELINE_* names)."""
        rows = self.query(
            "SELECT dagster_event_type FROM event_logs WHERE run_id = %s AND "
            "(dagster_event_type LIKE 'PIPELINE_%%' OR dagster_event_type LIKE 'RUN_%%') ORDER BY id",
            (run_id,),
        )
        return [str(r[0]).replace("PIPELINE_", "RUN_") for r in rows]

    def tags(self, run_id: str) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.query("SELECT key, value FROM run_tags WHERE run_id = %s", (run_id,))}

    def lock_holder(self) -> tuple[object, ...] | None:
        """(host, pid, run_id) of whoever holds the refresh lock now, or None."""
        from rag_platform.locking import NAMESPACE, REFRESH_KEY

        rows = self.query(
            "SELECT h.host, h.pid, h.run_id FROM pg_locks l JOIN rag_platform_lock_holders h ON h.backend_pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 2",
            (NAMESPACE, REFRESH_KEY),
        )
        return rows[0] if rows else None
