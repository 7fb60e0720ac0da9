"""Ingest into a real DuckDB warehouse: versions, tombstones, quarantine reasons, idempotence."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from rag_platform.ingest import ingest_sources
from rag_platform.warehouse import SCHEMA


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(tmp_path / "w.duckdb"))
    connection.execute(SCHEMA)
    return connection


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def live_rows(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute(
        """SELECT uri, document_version, is_deleted FROM raw_documents
           QUALIFY row_number() OVER (PARTITION BY uri ORDER BY seq DESC) = 1"""
    ).fetchall()
    return {uri: version for uri, version, deleted in rows if not deleted}


def test_versions_are_appended_only_on_change(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    src = tmp_path / "src"
    a = write(src / "a.md", "# A\n\nfirst")
    write(src / "sub" / "b.txt", "B text")
    stats = ingest_sources(con, [src], "run1", 10_000)
    assert (stats.added, stats.modified, stats.unchanged) == (2, 0, 0)
    stats = ingest_sources(con, [src], "run2", 10_000)
    assert (stats.added, stats.modified, stats.unchanged) == (0, 0, 2)
    assert con.execute("SELECT count(*) FROM raw_documents").fetchall()[0][0] == 2
    write(a, "# A\n\nsecond")
    stats = ingest_sources(con, [src], "run3", 10_000)
    assert (stats.added, stats.modified, stats.unchanged) == (0, 1, 1)
    assert con.execute("SELECT count(*) FROM raw_documents").fetchall()[0][0] == 3


def test_deleted_and_moved_files_leave_tombstones(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    src = tmp_path / "src"
    a = write(src / "a.md", "# A\n\ntext")
    ingest_sources(con, [src], "run1", 10_000)
    a.rename(src / "moved.md")
    stats = ingest_sources(con, [src], "run2", 10_000)
    assert (stats.added, stats.deleted) == (1, 1)
    assert list(live_rows(con)) == [(src / "moved.md").as_uri()]
    events = con.execute("SELECT event, run_id FROM document_events ORDER BY occurred_at, event").fetchall()
    assert ("deleted", "run2") in events and ("added", "run2") in events


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.md", b"", "empty file"),
        ("binary.md", b"\x89PNG\x00\x00\x00", "binary content"),
        ("latin.md", "caf\u00e9".encode("latin-1"), "invalid UTF-8"),
        ("big.md", b"# big\n\n" + b"x " * 600, "over the limit of 1000"),
    ],
)
def test_bad_files_are_quarantined_with_reason(
    tmp_path: Path, con: duckdb.DuckDBPyConnection, name: str, data: bytes, reason: str
) -> None:
    src = tmp_path / "src"
    write(src / "good.md", "# Good\n\ntext")
    write(src / name, data)
    stats = ingest_sources(con, [src], "run1", 1000)
    assert (stats.added, stats.quarantined) == (1, 1)
    rows = con.execute("SELECT uri, reason FROM quarantine").fetchall()
    assert len(rows) == 1 and rows[0][0].endswith(name) and reason in rows[0][1]
    assert list(live_rows(con)) == [(src / "good.md").as_uri()]


def test_unreadable_file_is_quarantined(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    """A dangling symlink (to a missing file inside the source) is listed by the folder scan but cannot be read
    (works even as root)."""
    src = tmp_path / "src"
    write(src / "good.md", "# Good\n\ntext")
    (src / "dangling.md").symlink_to(src / "nowhere.md")
    stats = ingest_sources(con, [src], "run1", 10_000)
    assert (stats.added, stats.quarantined) == (1, 1)
    reasons = [r[0] for r in con.execute("SELECT reason FROM quarantine").fetchall()]
    assert reasons[0].startswith("unreadable")


def test_a_fixed_file_leaves_quarantine_and_a_broken_one_leaves_the_corpus(
    tmp_path: Path, con: duckdb.DuckDBPyConnection
) -> None:
    src = tmp_path / "src"
    doc = write(src / "doc.md", b"")
    ingest_sources(con, [src], "run1", 10_000)
    assert con.execute("SELECT count(*) FROM quarantine").fetchall()[0][0] == 1
    write(doc, "# Now fine\n\ntext")
    stats = ingest_sources(con, [src], "run2", 10_000)
    assert stats.added == 1 and con.execute("SELECT count(*) FROM quarantine").fetchall()[0][0] == 0
    write(doc, b"\x00\x01binary")
    ingest_sources(con, [src], "run3", 10_000)
    assert live_rows(con) == {}
    assert con.execute("SELECT count(*) FROM quarantine").fetchall()[0][0] == 1
