"""Incremental refresh equals a full rebuild, and a refresh killed anywhere converges on the next run.

Both use the real job (Dagster, dbt, GX, LanceDB) with a tiny locally built sentence-transformers model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from shared_env import inherited_environment

from rag_platform.backends import make_backend
from rag_platform.config import load_settings

pytestmark = pytest.mark.slow

PARAGRAPHS = [
    "Glaciers carve U-shaped valleys as they advance and retreat over thousands of years.",
    "A sourdough starter needs daily feeding with flour and water to stay active.",
    "The Sicilian Defence answers 1.e4 with c5 and leads to sharp positions.",
    "Tides rise and fall twice a day under the pull of the Moon and the Sun.",
    "Bees communicate the direction of flowers with a waggle dance.",
    "Compilers translate source code into machine instructions in several passes.",
]


def served_index(home: Path) -> dict[str, tuple[str, np.ndarray]]:
    """chunk_id -> (text, vector) of the version the alias serves in ``home``."""
    env_home = os.environ.get("RAG_PLATFORM_HOME")
    os.environ["RAG_PLATFORM_HOME"] = str(home)
    try:
        backend = make_backend(load_settings(home))
        name = backend.resolve_alias(load_settings(home).index.alias)
        assert name is not None
        ids = sorted(backend.chunk_hashes(name))
        return {c.chunk_id: (c.text, np.asarray(c.vector, dtype=np.float32)) for c in backend.get(name, ids)}
    finally:
        if env_home is not None:
            os.environ["RAG_PLATFORM_HOME"] = env_home


def assert_same_index(a: dict[str, tuple[str, np.ndarray]], b: dict[str, tuple[str, np.ndarray]]) -> None:
    assert sorted(a) == sorted(b)
    for chunk_id, (text, vector) in a.items():
        assert b[chunk_id][0] == text
        np.testing.assert_allclose(b[chunk_id][1], vector, atol=1e-6)


def cli(home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = inherited_environment()
    environment.update({"RAG_PLATFORM_HOME": str(home), **env})
    return subprocess.run(
        [sys.executable, "-m", "rag_platform.cli", *args], capture_output=True, text=True, env=environment, timeout=600
    )


@pytest.fixture
def model_env(tiny_model_dir: Path) -> dict[str, str]:
    return {
        "RAG_PLATFORM__EMBEDDING__MODEL": str(tiny_model_dir),
        "RAG_PLATFORM__CHUNKER__MAX_TOKENS": "24",
        "RAG_PLATFORM__CHUNKER__OVERLAP": "4",
        "RAG_PLATFORM__GATES__MAX_DELETE_FRACTION": "1.0",
        "RAG_PLATFORM__EMBEDDING__COMMIT_EVERY": "3",
        "RAG_PLATFORM__INDEX__WRITE_BATCH": "3",
    }


def write_corpus(folder: Path, files: dict[str, str]) -> None:
    for path in folder.rglob("*.md"):
        path.unlink()
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


operation = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 99), st.lists(st.integers(0, 5), min_size=1, max_size=3)),
    st.tuples(st.just("modify"), st.integers(0, 99), st.lists(st.integers(0, 5), min_size=1, max_size=3)),
    st.tuples(st.just("delete"), st.integers(0, 99), st.just([])),
    st.tuples(st.just("rename"), st.integers(0, 99), st.just([])),
)


def apply(files: dict[str, str], op: tuple[str, int, list[int]], step: int) -> None:
    kind, pick, paragraphs = op
    names = sorted(files)
    body = "\n\n".join(PARAGRAPHS[i] for i in paragraphs)
    if kind == "add" or not names:
        files[f"doc{step}_{pick}.md"] = f"# Note {pick}\n\n{body}\n"
        return
    name = names[pick % len(names)]
    if kind == "modify":
        files[name] = files[name] + f"\n## Update {step}\n\n{body}\n"
    elif kind == "delete":
        del files[name]
    else:
        files[f"moved/{step}_{name}"] = files.pop(name)


def refresh_in_process(home: Path, source: Path | None = None) -> None:
    """The refresh job in this process (the model and imports stay loaded between runs), as the CLI runs it."""
    from rag_platform import warehouse
    from rag_platform.defs.runner import execute_refresh
    from rag_platform.environment import prepare_environment
    from rag_platform.ingest import register_source

    settings = load_settings(home)
    if source is not None:
        prepare_environment(settings)
        with warehouse.writer(settings) as con:
            register_source(con, source)
        warehouse.export_snapshot(settings)
    outcome = execute_refresh(settings, False, trigger="test")
    assert outcome.success, outcome.failure


@settings(
    max_examples=2,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(operation, min_size=1, max_size=3))
@example(operations=[("modify", 0, [1]), ("rename", 1, []), ("delete", 2, []), ("add", 7, [2, 3])])  # each kind
def test_incremental_refresh_equals_full_rebuild(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    model_env: dict[str, str],
    operations: list[tuple[str, int, list[int]]],
) -> None:
    """One incremental refresh per operation, then one full build of the final corpus in a fresh home: the same
    served index (the state the increments accumulated is what a difference would show in)."""
    root = tmp_path_factory.mktemp("prop")
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster"))
    monkeypatch.setenv("RAG_PLATFORM_HOME", str(root / "incremental"))  # refresh_in_process points it at each home
    for name, value in model_env.items():
        monkeypatch.setenv(name, value)
    source = root / "corpus"
    source.mkdir()
    files = {f"base{i}.md": f"# Base {i}\n\n{PARAGRAPHS[i]}\n\n{PARAGRAPHS[i + 1]}\n" for i in range(4)}
    write_corpus(source, files)
    incremental = root / "incremental"
    refresh_in_process(incremental, source)
    for step, op in enumerate(operations):
        apply(files, op, step)
        write_corpus(source, files)
        refresh_in_process(incremental)
    full_home = root / "full"
    refresh_in_process(full_home, source)
    assert_same_index(served_index(incremental), served_index(full_home))


@pytest.mark.parametrize("fault", ["parse:2", "embed:2", "index_write:2", "alias_switch:1"])
def test_killed_refresh_converges_to_a_full_build(tmp_path: Path, model_env: dict[str, str], fault: str) -> None:
    source = tmp_path / "corpus"
    source.mkdir()
    write_corpus(source, {f"d{i}.md": f"# D{i}\n\n{PARAGRAPHS[i]}\n\n{PARAGRAPHS[(i + 2) % 6]}\n" for i in range(6)})
    home = tmp_path / "home"
    killed = cli(home, "refresh", "--source", str(source), "--json", env={**model_env, "RAG_PLATFORM_FAULT": fault})
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    assert killed.stdout == ""
    again = cli(home, "refresh", "--json", env=model_env)
    assert again.returncode == 0, again.stderr[-2000:]
    reference = tmp_path / "reference"
    assert cli(reference, "refresh", "--source", str(source), "--json", env=model_env).returncode == 0
    assert_same_index(served_index(home), served_index(reference))
    import duckdb

    con = duckdb.connect(str(home / "snapshot.duckdb"), read_only=True)
    statuses = [r[0] for r in con.execute("SELECT status FROM runs ORDER BY started_at").fetchall()]
    con.close()
    assert statuses == ["failed", "succeeded"]


def test_a_killed_incremental_refresh_changes_nothing_that_is_served(tmp_path: Path, model_env: dict[str, str]) -> None:
    """Regression: an incremental refresh killed between index writes used to serve its first batches."""
    source = tmp_path / "corpus"
    source.mkdir()
    files = {f"d{i}.md": f"# D{i}\n\n{PARAGRAPHS[i]}\n" for i in range(5)}
    write_corpus(source, files)
    home = tmp_path / "home"
    assert cli(home, "refresh", "--source", str(source), "--json", env=model_env).returncode == 0
    before = json.loads(cli(home, "status", "--json", env=model_env).stdout)

    files["d0.md"] = f"# D0\n\n{PARAGRAPHS[5]}\n"
    files["d5.md"] = f"# D5\n\n{PARAGRAPHS[3]} {PARAGRAPHS[4]}\n"
    del files["d1.md"]
    (source / "d1.md").unlink()
    write_corpus(source, files)
    one_per_batch = {**model_env, "RAG_PLATFORM__INDEX__WRITE_BATCH": "1"}
    killed = cli(home, "refresh", "--json", env={**one_per_batch, "RAG_PLATFORM_FAULT": "index_write:3"})
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    during = json.loads(cli(home, "status", "--json", env=model_env).stdout)
    assert during["index"]["checksum"] == before["index"]["checksum"]
    assert (during["documents"], during["chunks"]) == (before["documents"], before["chunks"])

    assert cli(home, "refresh", "--json", env=one_per_batch).returncode == 0
    reference = tmp_path / "reference"
    assert cli(reference, "refresh", "--source", str(source), "--json", env=model_env).returncode == 0
    assert_same_index(served_index(home), served_index(reference))
