"""End to end with real components: Dagster in-process, dbt + DuckDB, the bundled model, GX, LanceDB.

Runs the same job the CLI and the sensor run, on a small fixture corpus copied into tmp_path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rag_platform import warehouse
from rag_platform.backends import make_backend
from rag_platform.config import load_settings
from rag_platform.ingest import register_source
from rag_platform.lineage import audit, status

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).parent / "data" / "corpus"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    target = tmp_path / "corpus"
    shutil.copytree(CORPUS, target)
    return target


def refresh(full: bool = False) -> dict:
    from rag_platform.defs.runner import execute_refresh
    from rag_platform.pipeline.run_record import run_summary

    outcome = execute_refresh(load_settings(), full, trigger="test")
    summary = run_summary(load_settings(), outcome.run_id)
    summary["success"] = outcome.success
    summary["failure"] = outcome.failure
    return summary


def search(query: str, mode: str = "hybrid", k: int = 5) -> dict:
    from rag_platform.retrieval import Searcher, SearchRequest

    return Searcher.from_settings(load_settings()).search(SearchRequest(query=query, k=k, mode=mode))


def data_versions() -> dict[str, str]:
    """The data version Dagster recorded at each asset's latest materialization."""
    import dagster as dg

    instance = dg.DagsterInstance.get()
    versions = {}
    for asset in ("raw_documents", "document_chunks", "chunk_embeddings", "search_index"):
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        assert event is not None and event.asset_materialization is not None, asset
        versions[asset] = event.asset_materialization.tags.get("dagster/data_version", "")
    return versions


def add_source(path: Path) -> None:
    settings = load_settings()
    with warehouse.writer(settings) as con:
        register_source(con, path)


def test_full_graph_builds_a_searchable_index_and_stays_incremental(platform_home: Path, corpus: Path) -> None:
    add_source(corpus)
    first = refresh()
    assert first["success"], first["failure"]
    assert first["documents"]["added"] == 5
    assert first["published"] and first["index"]["count"] == first["chunks"]["total"] > 0
    assert first["chunks"]["embedded"] == first["chunks"]["total"]
    # GX suites, dbt tests and index gates are all gates of the run, in one shape.
    dbt_tests = [name for name in first["gates"] if name.startswith("unique_current_documents")]
    assert dbt_tests and all(first["gates"][name]["passed"] for name in dbt_tests)
    assert {"documents_pass_quality_suite", "index_matches_ledger"} <= set(first["gates"])

    for mode in ("hybrid", "dense", "keyword"):
        top = search("how do I roll back to an earlier index version", mode)["results"][0]
        assert top["source"].endswith("guides/rollback.md"), (mode, top)
    assert search("sourdough starter feeding", "dense")["results"][0]["source"].endswith("baking.md")
    assert search("spring tides moon", "keyword")["results"][0]["source"].endswith("tides.html")

    first_versions = data_versions()
    assert all(first_versions.values()), first_versions
    second = refresh()
    assert second["success"] and second["chunks"]["embedded"] == 0
    assert data_versions() == first_versions  # same content, same data versions: nothing downstream is stale
    assert second["documents"]["unchanged"] == 5 and second["index"]["upserted"] == 0
    assert second["index"]["version"] == first["index"]["version"]

    baking = corpus / "baking.md"
    baking.write_text(baking.read_text() + "\n## Storing\n\nWrap the cooled loaf in a linen towel.\n")
    (corpus / "chess.txt").unlink()
    third = refresh()
    assert third["success"], third["failure"]
    changed = data_versions()
    assert all(changed[asset] != first_versions[asset] for asset in changed), (changed, first_versions)
    assert (third["documents"]["modified"], third["documents"]["deleted"]) == (1, 1)
    assert 0 < third["chunks"]["embedded"] <= 2
    hits = search("Sicilian Defence opening", "keyword", k=10)["results"]
    assert all(not h["source"].endswith("chess.txt") for h in hits)

    settings = load_settings()
    state = status(settings, make_backend(settings))
    assert state["documents"] == 4 and state["chunks"] == state["index"]["count"] == third["index"]["count"]

    rebuilt = refresh(full=True)
    assert rebuilt["success"] and rebuilt["published"]
    assert rebuilt["index"]["version"] != third["index"]["version"]
    after = status(settings, make_backend(settings))
    assert after["index"]["checksum"] == state["index"]["checksum"]
    assert after["index"]["version"] == rebuilt["index"]["version"]


def test_lineage_traces_a_result_to_its_runs(platform_home: Path, corpus: Path) -> None:
    add_source(corpus)
    first = refresh()
    hit = search("stratovolcano eruptions", "dense")["results"][0]
    record = audit(load_settings(), hit["chunk_id"])
    assert record is not None and record["kind"] == "chunk"
    assert record["source"] == hit["source"] and record["document_version"] == hit["document_version"]
    assert record["runs"] == {k: first["run_id"] for k in ("ingested", "chunked", "embedded", "indexed")}
    assert record["index_version"] == first["index"]["version"]
    assert record["embedding_model"].startswith("all-MiniLM-L6-v2")
    assert record["chunker"]["max_tokens"] == 200
    assert [e["event"] for e in record["history"]] == ["added"]
    doc = audit(load_settings(), hit["document_id"])
    assert doc is not None and hit["chunk_id"] in doc["chunks"]


def test_bad_documents_are_quarantined_and_the_refresh_succeeds(platform_home: Path, corpus: Path) -> None:
    (corpus / "empty.md").write_bytes(b"")
    (corpus / "binary.md").write_bytes(b"\x00\x01\x02 not text")
    add_source(corpus)
    result = refresh()
    assert result["success"] and result["documents"]["quarantined"] == 2
    quarantined = status(load_settings(), make_backend(load_settings()))["quarantined"]
    assert sorted(Path(q["source"]).name for q in quarantined) == ["binary.md", "empty.md"]
    assert all(q["reason"] and q["since"] for q in quarantined)

    import dagster as dg

    key = dg.AssetCheckKey(dg.AssetKey("raw_documents"), "no_documents_quarantined")
    record = dg.DagsterInstance.get().get_latest_asset_check_evaluation_record(key)
    assert record is not None and record.run_id == result["run_id"]
    evaluation = record.event.dagster_event.event_specific_data  # the check warns, it does not block
    assert evaluation.passed is False and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["quarantined"].value == 2


def test_delete_gate_blocks_publishing_and_keeps_the_served_index(
    platform_home: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_source(corpus)
    first = refresh()
    for path in list(corpus.rglob("*.md")):
        path.unlink()
    blocked = refresh()
    assert not blocked["success"] and not blocked["published"]
    gate = blocked["gates"]["index_delete_fraction_within_limit"]
    assert not gate["passed"] and "would be deleted" in gate["message"]
    assert search("roll back index version", "keyword")["results"][0]["source"].endswith("rollback.md")
    assert status(load_settings(), make_backend(load_settings()))["index"]["count"] == first["index"]["count"]
    monkeypatch.setenv("RAG_PLATFORM__GATES__MAX_DELETE_FRACTION", "1.0")
    allowed = refresh()
    assert allowed["success"] and allowed["published"] and allowed["index"]["count"] < first["index"]["count"]


def test_run_record_is_json(platform_home: Path, corpus: Path) -> None:
    add_source(corpus)
    result = refresh()
    with warehouse.reader(load_settings()) as con:
        assert con is not None
        stats = json.loads(con.execute("SELECT stats FROM runs WHERE run_id = ?", [result["run_id"]]).fetchall()[0][0])
    assert set(stats) >= {"documents", "chunking", "embedding", "index", "gates"}


def write_judgments(folder: Path) -> Path:
    """A hand-made evaluation set over the fixture corpus (documents named by file: rollback.md -> rollback)."""
    queries = {
        "q1": "how do I roll back to an earlier index version",
        "q2": "sourdough starter feeding",
        "q3": "spring tides moon",
    }
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    qrels = "query-id\tcorpus-id\tscore\nq1\trollback\t2\nq2\tbaking\t2\nq3\ttides.html\t1\n"
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


def test_retrieval_regression_blocks_publishing(
    platform_home: Path, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_PLATFORM__EVAL__DATASET", str(write_judgments(tmp_path / "judgments")))
    monkeypatch.setenv("RAG_PLATFORM__GATES__NDCG_TOLERANCE", "0.1")
    add_source(corpus)
    first = refresh()
    assert first["success"], first["failure"]
    assert first["gates"]["retrieval_quality_within_tolerance"]["passed"]
    baseline = status(load_settings(), make_backend(load_settings()))["evaluation"]
    assert baseline["index_name"] == first["index"]["version"] and baseline["ndcg_at_10"] > 0.9

    # The relevant documents lose their content: a rebuilt version scores far lower and must not be served.
    originals = {name: (corpus / name).read_text() for name in ("baking.md", "guides/rollback.md")}
    for name in originals:
        (corpus / name).write_text("# Openings\n\nThe Sicilian defence answers 1.e4 with c5.\n")
    blocked = refresh(full=True)
    assert not blocked["success"] and not blocked["published"]
    gate = blocked["gates"]["retrieval_quality_within_tolerance"]
    assert not gate["passed"] and "below the previous version" in gate["message"]
    state = status(load_settings(), make_backend(load_settings()))
    assert state["index"]["version"] == first["index"]["version"]  # the previous version keeps serving
    assert state["evaluation"]["ndcg_at_10"] == baseline["ndcg_at_10"]

    # The same change as an incremental refresh writes into the served version itself: it must stay unseen.
    in_place = refresh()
    assert not in_place["success"] and not in_place["published"]
    assert in_place["index"]["version"] == first["index"]["version"] and in_place["index"]["upserted"] > 0
    held = status(load_settings(), make_backend(load_settings()))
    assert held["index"]["checksum"] == state["index"]["checksum"] and held["documents"] == state["documents"]
    assert search("how do I roll back to an earlier index version", "keyword")["results"][0]["source"].endswith(
        "guides/rollback.md"
    )

    for name, text in originals.items():
        (corpus / name).write_text(text)
    fixed = refresh(full=True)
    assert fixed["success"] and fixed["published"], fixed["gates"]
    assert fixed["index"]["version"] != first["index"]["version"]


def test_one_odd_document_never_blocks_the_corpus(platform_home: Path, corpus: Path) -> None:
    """Regression (issue 15): a table of numbers failed the documents suite on letter_share and blocked every
    other change. Numbers are content: the table is indexed and searchable; a document with no letter or
    digit at all is quarantined as ``nothing_to_search`` and the rest publishes."""
    add_source(corpus)
    first = refresh()
    assert first["success"] and first["published"]

    table = corpus / "vectors.txt"
    table.write_text("\n".join(", ".join(f"{(i * j) % 97 / 97:.4f}" for j in range(12)) for i in range(40)))
    (corpus / "rules.md").write_text("----\n\n* * *\n\n----\n")
    (corpus / "fresh.md").write_text("# Fresh\n\nMarmots whistle to warn each other of eagles.\n")
    published = refresh()
    assert published["success"] and published["published"], published["gates"]
    assert published["gates"]["documents_pass_quality_suite"]["passed"]
    assert published["documents"]["added"] == 2 and published["documents"]["quarantined"] == 1
    state = status(load_settings(), make_backend(load_settings()))
    assert [(q["source"].rsplit("/", 1)[-1], q["code"]) for q in state["quarantined"]] == [
        ("rules.md", "nothing_to_search")
    ]
    assert search("0.4124 0.8247", "keyword")["results"][0]["source"].endswith("vectors.txt")
    assert search("marmots whistle", "keyword")["results"][0]["source"].endswith("fresh.md")
