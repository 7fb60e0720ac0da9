"""The change-detection sensor with real Dagster: it requests a run when files change and skips otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from rag_platform import warehouse
from rag_platform.config import load_settings
from rag_platform.environment import prepare_environment
from rag_platform.ingest import ingest_sources, register_source
from rag_platform.sources import source_changes

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


@pytest.fixture
def source(platform_home: Path, tmp_path: Path) -> Path:
    target = tmp_path / "corpus"
    shutil.copytree(CORPUS, target)
    settings = load_settings()
    prepare_environment(settings)
    with warehouse.writer(settings) as con:
        register_source(con, target)
    warehouse.export_snapshot(settings)
    return target


def evaluate(cursor: str | None) -> tuple[list[dg.RunRequest], str | None, str | None]:
    from rag_platform.defs.sensors import build_corpus_sensor

    sensor = build_corpus_sensor(30)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor)
        data = sensor.evaluate_tick(context)
    return list(data.run_requests or []), data.cursor, data.skip_message


def test_sensor_requests_once_per_change_and_skips_when_unchanged(source: Path) -> None:
    requests, cursor, _ = evaluate(None)
    assert len(requests) == 1 and cursor and requests[0].run_key == cursor
    again, same_cursor, skip = evaluate(cursor)
    assert again == [] and same_cursor in (None, cursor) and skip and "no change" in skip

    original = (source / "baking.md").read_text()
    (source / "baking.md").write_text(original + "\nMore text.\n")
    changed, cursor2, _ = evaluate(cursor)
    assert len(changed) == 1 and changed[0].run_key != requests[0].run_key

    (source / "baking.md").write_text(original)  # revert: A -> B -> A must still trigger
    reverted, cursor3, _ = evaluate(cursor2)
    assert len(reverted) == 1
    assert reverted[0].run_key.split(":", 1)[1] == requests[0].run_key.split(":", 1)[1]
    assert reverted[0].run_key != requests[0].run_key

    (source / "guides" / "volcanoes.md").unlink()
    deleted, _, _ = evaluate(cursor3)
    assert len(deleted) == 1


def test_sensor_skips_without_sources(platform_home: Path) -> None:
    requests, _, skip = evaluate(None)
    assert requests == [] and skip and "no sources" in skip


def test_sensor_names_the_change_set_against_the_warehouse(source: Path) -> None:
    settings = load_settings()
    with warehouse.writer(settings) as con:
        ingest_sources(con, [source], "run-1", settings.source.max_bytes)
    warehouse.export_snapshot(settings)
    requests, cursor, _ = evaluate(None)
    assert requests[0].tags["rag/changes"] == "0 added, 0 modified, 0 deleted, 0 moved"

    (source / "baking.md").write_text((source / "baking.md").read_text() + "\nMore text.\n")
    (source / "guides" / "volcanoes.md").rename(source / "volcanoes.md")
    (source / "chess.txt").unlink()
    (source / "new.md").write_text("# New\n\nA page that was not there before.\n")
    changed, _, _ = evaluate(cursor)
    assert changed[0].tags["rag/changes"] == "1 added, 1 modified, 1 deleted, 1 moved"


def test_source_changes_pairs_each_vanished_document_with_at_most_one_move() -> None:
    known = {"a": "h1", "b": "h2", "c": "h3", "q": None}
    on_disk = {"a": "h1", "b": "h9", "a-copy": "h1", "c-new": "h3", "c-copy": "h3", "q": "unreadable:9"}
    changes = source_changes(on_disk, known)
    assert changes.moved == (("c", "c-copy"),)
    assert changes.added == ("a-copy", "c-new")
    assert changes.modified == ("b",) and changes.deleted == ()
