"""Evaluation metrics against hand-computed values, loader errors, run files and id round trips."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rag_platform.evaluation import (
    DatasetError,
    document_key_from_path,
    documents_from_chunks,
    file_name_for,
    load_beir,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    score_run,
    write_trec_run,
)

L2 = math.log2
QRELS = {
    "q1": {"d1": 2, "d2": 1, "d9": 1},
    "q2": {"d5": 1},
    "q3": {"d7": 0},  # judged but nothing relevant: skipped
}
RUN = {
    "q1": {"d2": 0.9, "d3": 0.8, "d1": 0.7},  # ranks: d2 (1), d3 (2), d1 (3)
    "q2": {"d4": 0.5, "d6": 0.5, "d5": 0.1},  # tie d4/d6 broken by id; d5 at rank 3
}


@pytest.mark.parametrize(
    ("fn", "qid", "k", "expected"),
    [
        # DCG = 1/log2(2) + 2/log2(4) = 1 + 1 = 2; IDCG = 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.63093 + 0.5
        (ndcg_at_k, "q1", 10, 2 / (2 + 1 / L2(3) + 0.5)),
        # @1: DCG = 1; IDCG = 2
        (ndcg_at_k, "q1", 1, 0.5),
        (ndcg_at_k, "q2", 10, (1 / L2(4)) / 1.0),
        (ndcg_at_k, "q2", 2, 0.0),
        (recall_at_k, "q1", 10, 2 / 3),
        (recall_at_k, "q1", 1, 1 / 3),
        (recall_at_k, "q2", 2, 0.0),
        (mrr_at_k, "q1", 10, 1.0),
        (mrr_at_k, "q2", 10, 1 / 3),
        (mrr_at_k, "q2", 2, 0.0),
    ],
)
def test_metrics_match_hand_computed_values(fn, qid: str, k: int, expected: float) -> None:  # type: ignore[no-untyped-def]
    assert fn(RUN[qid], QRELS[qid], k) == pytest.approx(expected)


def test_score_run_averages_over_judged_queries_only() -> None:
    scores = score_run(RUN, QRELS)
    assert scores["ndcg@10"] == pytest.approx((2 / (2.5 + 1 / L2(3)) + 0.5) / 2)
    assert scores["recall@10"] == pytest.approx((2 / 3 + 1) / 2)
    assert scores["recall@100"] == pytest.approx(scores["recall@10"])
    assert scores["mrr@10"] == pytest.approx((1 + 1 / 3) / 2)


def test_a_query_without_results_scores_zero() -> None:
    assert score_run({}, {"q": {"d": 1}}) == {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}


def test_recall_at_100_sees_beyond_10() -> None:
    run = {"q": {f"x{i:03d}": 1.0 - i / 1000 for i in range(50)} | {"rel": 0.001}}
    assert score_run(run, {"q": {"rel": 1}})["recall@10"] == 0.0
    assert score_run(run, {"q": {"rel": 1}})["recall@100"] == 1.0


def test_documents_rank_by_their_best_chunk() -> None:
    hits = [("a", 0.9), ("b", 0.8), ("a", 0.95), ("c", 0.8)]
    assert documents_from_chunks(hits, 10) == [("a", 0.95), ("b", 0.8), ("c", 0.8)]
    assert documents_from_chunks(hits, 1) == [("a", 0.95)]


def write_dataset(folder: Path, corpus: str, queries: str, qrels: str) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(corpus)
    (folder / "queries.jsonl").write_text(queries)
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


def test_load_beir(tmp_path: Path) -> None:
    folder = write_dataset(
        tmp_path / "ds",
        '{"_id": "d1", "title": "T", "text": "x"}\n{"_id": "d2", "text": "y"}\n',
        '{"_id": "q1", "text": "query"}\n',
        "query-id\tcorpus-id\tscore\nq1\td1\t2\n",
    )
    data = load_beir(folder)
    assert data.corpus == {"d1": ("T", "x"), "d2": ("", "y")}
    assert data.queries == {"q1": "query"} and data.qrels == {"q1": {"d1": 2}}


@pytest.mark.parametrize(
    ("corpus", "qrels", "message"),
    [
        ('{"_id": "d1"}\nnot json\n', "query-id\tcorpus-id\tscore\n", "corpus.jsonl line 2: invalid JSON"),
        ('{"title": "no id"}\n', "query-id\tcorpus-id\tscore\n", "corpus.jsonl line 1: expected an object"),
        ('{"_id": "d1"}\n', "query-id\tcorpus-id\tscore\nq1\td1\n", "test.tsv line 2: expected"),
        ('{"_id": "d1"}\n', "query-id\tcorpus-id\tscore\nq1\td1\thigh\n", "is not an integer"),
    ],
)
def test_loader_errors_name_file_and_line(tmp_path: Path, corpus: str, qrels: str, message: str) -> None:
    folder = write_dataset(tmp_path / "ds", corpus, '{"_id": "q1", "text": "q"}\n', qrels)
    with pytest.raises(DatasetError, match=message):
        load_beir(folder)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_beir(tmp_path / "nope")
    (tmp_path / "ds").mkdir()
    with pytest.raises(DatasetError, match=r"corpus\.jsonl is missing"):
        load_beir(tmp_path / "ds")


def test_trec_run_format(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    write_trec_run(path, RUN, "tag", depth=2)
    assert path.read_text().splitlines() == [
        "q1 Q0 d2 1 0.900000 tag",
        "q1 Q0 d3 2 0.800000 tag",
        "q2 Q0 d4 1 0.500000 tag",
        "q2 Q0 d6 2 0.500000 tag",
    ]


@pytest.mark.parametrize("doc_id", ["plain", "a/b c", "x=y%z", "üñí", "<dbpedia:Foo_(bar)>", ".hidden"])
def test_file_names_round_trip_through_paths_and_uris(tmp_path: Path, doc_id: str) -> None:
    path = tmp_path / file_name_for(doc_id)
    path.write_text("x")
    assert not path.name.startswith(".")  # hidden files are skipped by the source scan
    assert document_key_from_path(str(path)) == doc_id
    assert document_key_from_path(path.as_uri()) == doc_id
