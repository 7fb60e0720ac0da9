"""A real PostgreSQL server for the production tests, from the ``pgserver`` wheel (CI needs nothing else).

pgserver initialises the data folder (as an unprivileged system user when the tests run as root) and starts it on
a socket with trust auth; the fixture then gives it a password-checked TCP listener on 127.0.0.1, so the platform
connects as it would to a real deployment: ``postgresql://USER:PASSWORD@HOST:PORT/DB``.
"""

from __future__ import annotations

import secrets
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

pgserver = pytest.importorskip("pgserver", reason="the dev extra installs pgserver (a PostgreSQL server wheel)")
psycopg2 = pytest.importorskip("psycopg2", reason="the postgres extra installs psycopg2-binary")


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
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
