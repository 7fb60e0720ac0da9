"""A folder a careless or hostile colleague wrote into: one real ``rag-platform refresh`` (CLI, Dagster, dbt, GX,
LanceDB, a tiny real model) indexes every good document, quarantines every bad one with its code, reads nothing
outside the source, never hangs on a special file and stays within a bounded amount of memory."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from shared_env import inherited_environment

from rag_platform.change_detection import StatCache, hash_sources_cached

pytestmark = pytest.mark.slow

# Peak resident memory of the refresh process (and the dbt process it waits for). A refresh of a small corpus
# with the tiny model peaks at 1.0-2.6 GB (torch, Dagster, GX, DuckDB and LanceDB loaded; measured on 2 cores,
# higher under load); reading the 4 GB sparse file whole would add 4.3 GB and /dev/zero grows without bound,
# so either passes this bound.
MAX_RSS_BYTES = 4_000_000_000
DEPTH_HTML = 10_000
DEPTH_FOLDERS = 1_200

GOOD = {
    "guide.md": ("# Glacier guide\n\nGlaciers carve valleys as they advance and retreat.\n", "glaciers"),
    "chess.txt": ("Chess openings\n\nThe Sicilian Defence answers e4 with c5.\n", "sicilian"),
    # 20 KB of spaces in a heading line that the old heading regex failed to match only after hours.
    "heading.md": ("# Tidal" + " " * 20_000 + "#:\n\nTides rise twice a day under the Moon.\n", "tides"),
    "numbers.txt": ("\n".join(" ".join(f"{i * j % 97:>3}" for j in range(12)) for i in range(60)), "77"),
    "deep.html": (
        "<div>" * DEPTH_HTML + "<p>Abyssal trenches hold strange fish.</p>" + "</div>" * DEPTH_HTML,
        "abyssal",
    ),
}
BAD = {  # file name -> quarantine code
    "leak.md": "outside_source",
    "zero.md": "outside_source",
    "pipe.md": "not_regular_file",
    "huge.md": "too_large",
    "empty.md": "empty",
    "binary.md": "binary",
    "latin1.md": "bad_encoding",
    "locked.md": "unreadable",
    "caf\udce9.md": "bad_filename",  # the bytes b"caf\xe9.md": not UTF-8
    "symbols.md": "nothing_to_search",
}


def build_corpus(root: Path, outside: Path) -> None:
    root.mkdir()
    for name, (text, _) in GOOD.items():
        (root / name).write_text(text, encoding="utf-8")
    deep = root
    for _ in range(DEPTH_FOLDERS):  # one level at a time: mkdir(parents=True) itself recurses
        deep = deep / "d"
        deep.mkdir()
    (deep / "bottom.md").write_text("# Bottom\n\nStalactites hang from cave ceilings.\n")
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nThe vault code is zanzibar.\n")
    (root / "leak.md").symlink_to(outside / "secret.md")
    (root / "zero.md").symlink_to("/dev/zero")
    os.mkfifo(root / "pipe.md")
    with open(root / "huge.md", "wb") as sparse:
        sparse.truncate(4 * 1024**3)
    (root / "empty.md").write_bytes(b"")
    (root / "binary.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (root / "latin1.md").write_bytes("# Caf\u00e9\n\ncr\u00e8me".encode("latin-1"))
    (root / "locked.md").write_text("# Locked\n\nprivate notes\n")
    (root / "locked.md").chmod(0)
    (root / os.fsdecode(b"caf\xe9.md")).write_text("# Cafe\n\ncoffee\n")
    (root / "symbols.md").write_text("----\n\n*** ### ***\n\n----\n")


def remove_deep_folders(root: Path) -> None:
    """Delete the nested folders bottom-up: shutil.rmtree (and so pytest's clean-up of old temporary folders)
    recurses once per level."""
    deepest = root
    while (deepest / "d").is_dir():
        deepest = deepest / "d"
    while deepest != root:
        for child in deepest.iterdir():
            child.unlink()
        deepest.rmdir()
        deepest = deepest.parent


@pytest.fixture
def corpus(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    root, outside = tmp_path / "corpus", tmp_path / "outside"
    build_corpus(root, outside)
    yield root, outside
    remove_deep_folders(root)


def run_cli(home: Path, *args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the console script; returns the result and the child's peak resident memory in bytes."""
    environment = inherited_environment()
    environment.update({"RAG_PLATFORM_HOME": str(home), **env})
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "rag_platform.cli", *args], stdout=stdout, stderr=stderr, text=True, env=environment
        )
        _, status, usage = os.wait4(process.pid, 0)  # this child's own resource usage, peak memory included
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        result = subprocess.CompletedProcess(process.args, process.returncode, stdout.read(), stderr.read())
    return result, usage.ru_maxrss * 1024  # kilobytes on Linux


@pytest.mark.timeout(420)
def test_one_refresh_of_a_hostile_folder(corpus: tuple[Path, Path], tmp_path: Path, tiny_model_dir: Path) -> None:
    root, home = corpus[0], tmp_path / "ho'me"  # a quote in the home path is data, not SQL
    env = {
        "RAG_PLATFORM__EMBEDDING__MODEL": str(tiny_model_dir),
        "RAG_PLATFORM__EMBEDDING__BACKEND": "torch",
        "RAG_PLATFORM__SOURCE__MAX_BYTES": "1000000",
    }

    refreshed, peak = run_cli(home, "refresh", "--source", str(root), "--json", env=env)
    assert refreshed.returncode == 0, refreshed.stderr[-2000:]
    summary = json.loads(refreshed.stdout)
    assert summary["published"], summary["gates"]
    assert summary["documents"]["added"] == len(GOOD) + 1 and summary["documents"]["quarantined"] == len(BAD)
    assert peak < MAX_RSS_BYTES, f"refresh peaked at {peak / 1e9:.2f} GB"
    print(f"hostile refresh: {summary['seconds']} s {summary['stages']}, peak RSS {peak / 1e9:.2f} GB")

    state, _ = run_cli(home, "status", "--json", env=env)
    quarantined = {
        entry["source"].rsplit("/", 1)[-1]: entry["code"] for entry in json.loads(state.stdout)["quarantined"]
    }
    expected = {(root / name).as_uri().rsplit("/", 1)[-1]: code for name, code in BAD.items()}
    assert quarantined == expected

    searchable = {**{name: word for name, (_, word) in GOOD.items()}, "bottom.md": "stalactites"}
    for name, word in searchable.items():
        found, _ = run_cli(home, "search", word, "--mode", "keyword", "--json", env=env)
        sources = [hit["source"] for hit in json.loads(found.stdout)["results"]]
        assert sources and sources[0].endswith("/" + name), (name, sources)

    leaked, _ = run_cli(home, "search", "vault code zanzibar", "--mode", "keyword", "--json", env=env)
    assert all(
        "zanzibar" not in hit["text"] and hit["source"].startswith(root.as_uri())
        for hit in json.loads(leaked.stdout)["results"]
    )


@pytest.mark.timeout(60)
def test_the_sensors_hashing_follows_the_same_rules(corpus: tuple[Path, Path]) -> None:
    """The sensor (and the index's freshness check) hash changed files on each tick: the FIFO, /dev/zero and the
    sparse file must not hang it or exhaust memory, and a link out of the root must not be read (its content
    would not change the hash)."""
    root, outside = corpus

    def hash_sources(roots: list[Path], max_bytes: int) -> dict[str, str]:
        return hash_sources_cached(roots, max_bytes, StatCache(None)).versions

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hashes = hash_sources([root], 1_000_000)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kilobytes
    by_name = {uri.rsplit("/", 1)[-1]: value for uri, value in hashes.items()}
    assert by_name["pipe.md"].startswith("refused:not_regular_file:")
    assert by_name["zero.md"] == "refused:outside_source"
    assert by_name["huge.md"].startswith("refused:too_large:")
    leak = by_name["leak.md"]
    (outside / "secret.md").write_text("changed outside the root")
    assert hash_sources([root], 1_000_000)[(root / "leak.md").as_uri()] == leak
