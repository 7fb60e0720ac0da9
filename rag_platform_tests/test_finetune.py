"""Fine-tuning: pairs without evaluation queries, deterministic versions, and the gain gate deciding whether
the candidate index (built through the refresh job) serves. Real Dagster, dbt, LanceDB and a tiny real model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag_platform import warehouse
from rag_platform.config import load_settings
from rag_platform.finetuning import (
    ChunkRow,
    Pair,
    TrainingConfig,
    corpus_pairs,
    data_version,
    mine_hard_negatives,
    model_version,
    split_out_queries,
)

CORPUS = Path(__file__).parent / "data" / "corpus"


def row(doc: str, ordinal: int, title: str, heading: str, body: str) -> ChunkRow:
    return ChunkRow(f"{doc}-{ordinal}", doc, ordinal, title, heading, f"{heading}\n\n{body}", f"h-{doc}-{ordinal}")


ROWS = [
    row("d1", 0, "Sourdough starter", "Sourdough starter", "Feed the starter flour and water every day."),
    row("d1", 1, "Sourdough starter", "Sourdough starter > Feeding schedule", "Twice a day in warm kitchens."),
    row("d2", 0, "Spring tides", "Spring tides", "The moon and the sun pull together."),
]


def test_pairs_come_from_titles_headings_and_neighbours_without_the_evaluation_queries() -> None:
    pairs = corpus_pairs(ROWS + ROWS)  # duplicates collapse
    kinds = sorted((p.kind, p.anchor) for p in pairs)
    assert kinds == [
        ("heading", "Feeding schedule"),
        ("neighbour", "Feed the starter flour and water every day."),
        ("title", "Sourdough starter"),
        ("title", "Spring tides"),
    ]
    assert all(not p.positive.startswith(p.anchor + "\n") for p in pairs)  # the heading context is stripped
    kept, dropped = split_out_queries(pairs, ["what are SPRING tides?", "feeding schedule"])
    assert dropped == 2
    assert {p.anchor for p in kept} == {"Sourdough starter", "Feed the starter flour and water every day."}


def test_the_model_version_is_a_fingerprint_of_base_data_and_training() -> None:
    config = TrainingConfig(1, 8, 2e-5, 1, 60, 10, 1)
    pairs = corpus_pairs(ROWS)
    again = corpus_pairs(list(reversed(ROWS)))
    assert data_version(pairs) == data_version(again)
    version = model_version("base", data_version(pairs), config)
    assert version == model_version("base", data_version(again), config)
    changed = [
        model_version("other-base", data_version(pairs), config),
        model_version("base", data_version([*pairs, Pair("x y", "z", "title", "d9", "h")]), config),
        model_version("base", data_version(pairs), TrainingConfig(2, 8, 2e-5, 1, 60, 10, 1)),
    ]
    assert version not in changed and len(set(changed)) == 3


def test_hard_negatives_come_from_other_documents_and_skip_likely_relevant_ones() -> None:
    pairs = [Pair("sourdough", "feed it", "title", "d1", "h1")]
    chunks = np.asarray([[1.0, 0.0], [0.99, 0.14], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    documents, texts, hashes = (
        ["d1", "d2", "d3", "d4"],
        ["feed it", "too close", "hard", "easy"],
        ["h1", "h2", "h3", "h4"],
    )
    anchor = np.asarray([[1.0, 0.0]], dtype=np.float32)
    (mined,) = mine_hard_negatives(pairs, anchor, chunks, documents, texts, hashes)
    assert mined.negative == "hard"  # d1 is its own document; d2 scores within the false-negative margin


def test_finetune_refuses_without_an_evaluation_set(platform_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rag_platform.cli import main

    assert main(["finetune", "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "eval.dataset" in err[-1] and len(err) == 1


def judgments(folder: Path) -> Path:
    queries = {"q1": "how do I roll back to an earlier index version", "q2": "sourdough starter feeding"}
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\trollback\t2\nq2\tbaking\t2\n")
    return folder


def finetune(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    from rag_platform.cli import main

    capsys.readouterr()
    code = main(["finetune", "--json", "--budget-s", "30", *args])
    return code, json.loads(capsys.readouterr().out)


def test_the_candidate_serves_only_when_it_gains_enough(
    platform_home: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rag_platform.defs.runner import execute_refresh
    from rag_platform.embedding import cached_query_embedder
    from rag_platform.ingest import register_source
    from rag_platform.retrieval import Searcher, SearchRequest

    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    monkeypatch.setenv("RAG_PLATFORM__EMBEDDING__MODEL", str(tiny_model_dir))
    monkeypatch.setenv("RAG_PLATFORM__EVAL__DATASET", str(judgments(tmp_path / "judgments")))
    monkeypatch.setenv("RAG_PLATFORM__GATES__NDCG_TOLERANCE", "1.0")
    monkeypatch.setenv("RAG_PLATFORM__FINETUNE__HARD_NEGATIVES", "1")  # the mining path too
    with warehouse.writer(load_settings()) as con:
        register_source(con, corpus)
    assert execute_refresh(load_settings(), False, trigger="test").success
    served = Searcher(load_settings()).served_version()

    # A gain no model can show: the candidate is built and scored, and nothing changes for users.
    monkeypatch.setenv("RAG_PLATFORM__FINETUNE__MIN_GAIN", "1.0")
    code, blocked = finetune(capsys)
    assert code == 0, blocked
    assert set(blocked) >= {"model", "base", "candidate", "published", "index_version"}
    assert set(blocked["model"]) >= {"name", "version", "path", "pairs", "train_seconds"}
    assert blocked["published"] is False and blocked["index_version"] == served
    assert blocked["candidate"]["index_version"] != served and blocked["model"]["pairs"] > 0
    assert isinstance(blocked["base"]["ndcg@10"], float) and isinstance(blocked["candidate"]["ndcg@10"], float)
    assert Path(blocked["model"]["path"]).is_dir()
    assert load_settings().embedding.model == str(tiny_model_dir)  # queries keep the served model

    # Any gain will do: the same inputs give the same model version (reused), and its index now serves.
    monkeypatch.setenv("RAG_PLATFORM__FINETUNE__MIN_GAIN", "-1.0")
    code, published = finetune(capsys)
    assert code == 0, published
    assert published["model"]["version"] == blocked["model"]["version"]
    assert published["published"] is True and published["index_version"] == published["candidate"]["index_version"]
    assert published["index_version"] != served
    settings = load_settings()
    assert settings.embedding.model == published["model"]["path"]
    # The light query path (ONNX Runtime and the tokenizer only) runs the fine-tuned model's export.
    embedder = cached_query_embedder(settings.embedding, settings.cache_dir)
    assert type(embedder).__name__ == "OnnxEmbedder" and published["model"]["path"] in embedder.model_id
    hits = Searcher(settings).search(SearchRequest(query="sourdough starter", k=3, mode="dense"))
    assert hits["index_version"] == published["index_version"] and hits["results"]
    with warehouse.owner_reader(settings) as con:
        assert con is not None
        compared = con.execute("SELECT published FROM fine_tune_comparisons ORDER BY compared_at").fetchall()
    assert [c[0] for c in compared] == [False, True]
