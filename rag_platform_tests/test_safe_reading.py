"""Safe reading of source files: what is opened, what is refused (with which code), and how much is read."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import duckdb
import pytest

from rag_platform.ingest import ingest_sources
from rag_platform.lineage import quarantine_code, quarantine_rows
from rag_platform.records import QUARANTINE_CODES, SourceFile
from rag_platform.sources import Refused, read_file, read_source_bytes, scan_source
from rag_platform.warehouse import SCHEMA


def source_file(root: Path, name: str) -> SourceFile:
    [file] = [f for f in scan_source(root) if f.path.endswith(os.sep + name)]
    return file


def refused(root: Path, name: str, max_bytes: int = 1000) -> str:
    with pytest.raises(Refused) as info:
        read_source_bytes(source_file(root, name), max_bytes)
    return info.value.code


def test_links_inside_the_root_are_read_and_links_out_are_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "real.md").write_text("inside")
    (outside / "secret.md").write_text("outside")
    (root / "alias.md").symlink_to(root / "sub" / "real.md")
    (root / "relative.md").symlink_to("../outside/secret.md")
    (root / "absolute.md").symlink_to(outside / "secret.md")
    (root / "linked-folder").symlink_to(outside, target_is_directory=True)
    assert read_source_bytes(source_file(root, "alias.md"), 1000) == b"inside"
    assert refused(root, "relative.md") == "outside_source"
    assert refused(root, "absolute.md") == "outside_source"
    assert all("linked-folder" not in f.path for f in scan_source(root))  # symlinked folders are not walked


def test_special_files_are_refused_without_being_opened(tmp_path: Path) -> None:
    """A FIFO with no writer would block ``open`` forever: it must be refused from its metadata."""
    root = tmp_path / "r"
    root.mkdir()
    os.mkfifo(root / "pipe.md")
    assert refused(root, "pipe.md") == "not_regular_file"
    short = Path("/tmp") / f"rag-sock-{os.getpid()}"  # AF_UNIX paths are limited to ~107 bytes
    short.mkdir(exist_ok=True)
    try:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(short / "s.md"))
            assert refused(short, "s.md") == "not_regular_file"
    finally:
        (short / "s.md").unlink(missing_ok=True)
        short.rmdir()


def test_reads_are_bounded(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    with open(root / "sparse.md", "wb") as sparse:
        sparse.truncate(8 * 1024**3)
    (root / "fits.md").write_bytes(b"x" * 1000)
    (root / "over.md").write_bytes(b"x" * 1001)
    assert refused(root, "sparse.md") == "too_large"
    assert refused(root, "over.md") == "too_large"
    assert read_source_bytes(source_file(root, "fits.md"), 1000) == b"x" * 1000


def test_a_file_its_owner_cannot_read_is_unreadable_even_for_root(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    (root / "locked.md").write_text("# private")
    (root / "locked.md").chmod(0)
    assert refused(root, "locked.md") == "unreadable"


def test_undecodable_names_are_quarantined_with_a_lossless_uri(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    name = os.fsdecode(b"caf\xe9.md")
    (root / name).write_text("# Cafe")
    file = source_file(root, name)
    assert file.uri.endswith("/caf%E9.md")  # the name's bytes, percent-encoded: nothing lost
    result = read_file(file, 1000)
    assert result.quarantined is not None and result.quarantined.code == "bad_filename"


def test_a_parser_failure_of_any_kind_quarantines_only_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rag_platform.sources as sources

    def explode(data: bytes, path: str) -> tuple[str, str, str]:
        raise RecursionError("maximum recursion depth exceeded")

    root = tmp_path / "r"
    root.mkdir()
    (root / "a.md").write_text("# A")
    monkeypatch.setattr(sources, "parse_document", explode)
    result = read_file(source_file(root, "a.md"), 1000)
    assert result.quarantined is not None and result.quarantined.code == "unparseable"
    assert "RecursionError" in result.quarantined.reason


def test_thousands_of_nested_folders_are_walked(tmp_path: Path) -> None:
    folder = root = tmp_path / "r"
    root.mkdir()
    for _ in range(1_500):
        folder = folder / "d"
        folder.mkdir()
    (folder / "bottom.md").write_text("# Bottom")
    try:
        assert [Path(f.path).name for f in scan_source(root)] == ["bottom.md"]
    finally:
        while folder != root:  # bottom-up: shutil.rmtree recurses per level
            for child in folder.iterdir():
                child.unlink()
            folder.rmdir()
            folder = folder.parent


def test_quarantine_rows_carry_codes_and_old_rows_get_one(tmp_path: Path) -> None:
    """Homes made before the ``code`` column: the ALTER adds it, and rows without a code get the one their
    reason stands for."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute(
        "CREATE TABLE quarantine (uri VARCHAR PRIMARY KEY, source VARCHAR, reason VARCHAR, document_version VARCHAR,"
        " since TIMESTAMP, run_id VARCHAR)"
    )
    con.execute("INSERT INTO quarantine VALUES ('file:///old.md', '/', 'invalid UTF-8 at byte 3', NULL, now(), 'r0')")
    con.execute(SCHEMA)
    assert [(r["source"], r["code"]) for r in quarantine_rows(con)] == [("file:///old.md", "bad_encoding")]
    root = tmp_path / "src"
    root.mkdir()
    (root / "empty.md").write_bytes(b"")
    (root / "symbols.md").write_text("---\n\n***\n")
    ingest_sources(con, [root], "run1", 1000)
    codes = {row["source"].rsplit("/", 1)[-1]: row["code"] for row in quarantine_rows(con)}
    assert codes == {"empty.md": "empty", "symbols.md": "nothing_to_search"}  # the old row's file is gone
    assert quarantine_code(None, "file is 9 bytes, over the limit of 1") == "too_large"
    assert {"outside_source", "not_regular_file", "bad_filename", "unparseable"} <= set(QUARANTINE_CODES)
