"""Fixtures for the production tests: a real PostgreSQL server (pgserver wheel) and PID namespaces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("pgserver", reason="the dev extra installs pgserver (a PostgreSQL server wheel)")
pytest.importorskip("psycopg2", reason="the postgres extra installs psycopg2-binary")

from pg_tools import Postgres, start_postgres, unshare_works


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with start_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def pid_namespaces() -> None:
    """Skip unless this machine can start processes in new PID namespaces (``unshare``, as root)."""
    if not unshare_works():
        pytest.skip("unshare --pid --fork --mount-proc is not available (needs root or user namespaces)")
