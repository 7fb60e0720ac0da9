"""The change-detection sensor with real Dagster: it requests a run when files change and skips otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from rag_platform import warehouse
from rag_platform.config import load_settings
from rag_platform.environment import prepare_environment
from rag_platform.ingest import register_source

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
