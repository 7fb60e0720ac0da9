"""The sensor's change detection: files are hashed only when their size, mtime or inode changed."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from rag_platform.change_detection import StatCache, hash_sources_cached
from rag_platform.sources import hash_sources

CORPUS = Path(__file__).resolve().parent / "data" / "corpus"
MAX_BYTES = 1_000_000


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    target = tmp_path / "corpus"
    shutil.copytree(CORPUS, target)
    past = time.time() - 600  # outside the racy window: hashes of these files may be remembered
    for path in target.rglob("*"):
        os.utime(path, (past, past))
    return target


def test_unchanged_files_are_not_read_again_and_results_match_a_full_hash(corpus: Path, tmp_path: Path) -> None:
    cache_file = tmp_path / "cache.json"
    cache = StatCache(cache_file)
    first = hash_sources_cached([corpus], MAX_BYTES, cache)
    cache.save()
    assert first.hashed == len(first.versions) > 3
    assert first.versions == hash_sources([corpus], MAX_BYTES)

    second = hash_sources_cached([corpus], MAX_BYTES, StatCache(cache_file))
    assert second.hashed == 0 and second.versions == first.versions


def test_same_size_same_mtime_replacement_is_seen_through_the_inode(corpus: Path, tmp_path: Path) -> None:
    """An atomic save (write elsewhere, rename over) can keep size and mtime; the inode still differs."""
    cache = StatCache(tmp_path / "cache.json")
    hash_sources_cached([corpus], MAX_BYTES, cache)
    cache.save()
    target = corpus / "baking.md"
    stat = target.stat()
    original = target.read_bytes()
    replacement = corpus / ".baking.tmp"
    replacement.write_bytes(original[:-1] + (b"X" if original[-1:] != b"X" else b"Y"))
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, target)

    scan = hash_sources_cached([corpus], MAX_BYTES, StatCache(tmp_path / "cache.json"))
    assert scan.hashed == 1
    assert scan.versions == hash_sources([corpus], MAX_BYTES)


def test_recently_written_files_are_hashed_again_until_they_settle(corpus: Path, tmp_path: Path) -> None:
    """A write within the same mtime tick as the scan would be invisible to the metadata, so the hash of a
    file modified within the racy window is not remembered."""
    (corpus / "new.md").write_text("# New\n\nJust written.\n")
    cache_file = tmp_path / "cache.json"
    first = StatCache(cache_file)
    hash_sources_cached([corpus], MAX_BYTES, first)
    first.save()
    again = hash_sources_cached([corpus], MAX_BYTES, StatCache(cache_file))
    assert again.hashed == 1


def test_deleted_files_leave_the_cache_and_a_damaged_cache_is_rebuilt(corpus: Path, tmp_path: Path) -> None:
    cache_file = tmp_path / "cache.json"
    cache = StatCache(cache_file)
    hash_sources_cached([corpus], MAX_BYTES, cache)
    cache.save()
    (corpus / "chess.txt").unlink()
    cache = StatCache(cache_file)
    scan = hash_sources_cached([corpus], MAX_BYTES, cache)
    assert not any(uri.endswith("chess.txt") for uri in cache.entries) and scan.hashed == 0

    cache_file.write_text("{not json")
    rebuilt = hash_sources_cached([corpus], MAX_BYTES, StatCache(cache_file))
    assert rebuilt.hashed == len(rebuilt.versions) and rebuilt.versions == scan.versions


def test_a_process_keeps_its_stat_cache_until_another_process_saves_the_file(corpus: Path, tmp_path: Path) -> None:
    from rag_platform.change_detection import CACHE_FILE, pending_changes
    from rag_platform.config import load_settings

    settings = load_settings(tmp_path / "home")
    first = pending_changes(settings, {}, [corpus])
    assert first.hashed == first.files > 3 and len(first.changes.added) == first.files
    assert pending_changes(settings, {}, [corpus]).hashed == 0
    # Another process (say the daemon's sensor) rewrites the file: this one reads it again, here an empty cache.
    (settings.cache_dir / CACHE_FILE).write_text("{}", encoding="utf-8")
    assert pending_changes(settings, {}, [corpus]).hashed == first.files
