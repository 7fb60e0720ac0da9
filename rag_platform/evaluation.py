"""Retrieval evaluation on BEIR-layout collections: loading, metrics, TREC run files.

Metrics follow trec_eval as used by BEIR (pytrec_eval): nDCG@k with linear gains (gain = relevance grade)
and a log2(rank + 1) discount, the ideal ranking built from all judged documents of the query; Recall@k
counts documents with grade > 0; MRR@k is the reciprocal rank of the first relevant document. Queries
without any judgment are skipped. Ties in a run are broken by document id (ascending) for determinism.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from rag_platform.gates import Gate

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


class DatasetError(ValueError):
    """The dataset folder is missing a file or has a malformed line."""


@dataclass(frozen=True, slots=True)
class BeirDataset:
    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def to_markdown_files(self, folder: Path) -> None:
        """One Markdown file per document (``# title`` then text), named reversibly from its ``_id``."""
        folder.mkdir(parents=True, exist_ok=True)
        for doc_id, (title, text) in self.corpus.items():
            body = f"# {title}\n\n{text}\n" if title else f"{text}\n"
            (folder / file_name_for(doc_id)).write_text(body, encoding="utf-8")

    @staticmethod
    def document_key(source: str) -> str:
        """The ``_id`` of the document a source path or URI was written from."""
        return document_key_from_path(source)


def file_name_for(doc_id: str) -> str:
    """A file name for ``doc_id`` that no source scan skips (no leading dot) and that decodes back exactly."""
    encoded = quote(doc_id, safe="").replace("%", "=")
    if encoded.startswith("."):
        encoded = "=2E" + encoded[1:]
    return encoded + ".md"


def document_key_from_path(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if name.endswith(".md"):
        name = name[:-3]
    # URIs percent-encode the '=' escapes we wrote; undo that layer first.
    return unquote(unquote(name).replace("=", "%"))


def _jsonl(path: Path) -> Iterable[tuple[int, dict[str, object]]]:
    if not path.is_file():
        raise DatasetError(f"{path.name} is missing from {path.parent}")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path.name} line {number}: invalid JSON ({exc.msg})") from None
            if not isinstance(record, dict) or "_id" not in record:
                raise DatasetError(f"{path.name} line {number}: expected an object with an _id")
            yield number, record


def load_beir(folder: Path, with_corpus: bool = True) -> BeirDataset:
    """Read corpus.jsonl, queries.jsonl and qrels/test.tsv; errors name the file and line.

    Without ``with_corpus`` only queries and judgments are read (scoring an index built from other files).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist")
    corpus = (
        {
            str(r["_id"]): (str(r.get("title") or ""), str(r.get("text") or ""))
            for _, r in _jsonl(folder / "corpus.jsonl")
        }
        if with_corpus
        else {}
    )
    queries = {str(r["_id"]): str(r.get("text") or "") for _, r in _jsonl(folder / "queries.jsonl")}
    qrels_path = folder / "qrels" / "test.tsv"
    if not qrels_path.is_file():
        raise DatasetError(f"qrels/test.tsv is missing from {folder}")
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if number == 1 and row and row[0] == "query-id":
                continue
            if not row:
                continue
            if len(row) != 3:
                raise DatasetError(f"qrels/test.tsv line {number}: expected query-id, corpus-id, score")
            try:
                grade = int(row[2])
            except ValueError:
                raise DatasetError(f"qrels/test.tsv line {number}: score {row[2]!r} is not an integer") from None
            qrels.setdefault(row[0], {})[row[1]] = grade
    return BeirDataset(corpus, queries, qrels)


def ranked(results: Mapping[str, float]) -> list[str]:
    return [doc for doc, _ in sorted(results.items(), key=lambda item: (-item[1], item[0]))]


def ndcg_at_k(results: Mapping[str, float], judgments: Mapping[str, int], k: int) -> float:
    gains = [judgments.get(doc, 0) for doc in ranked(results)[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g > 0)
    ideal = sorted((g for g in judgments.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_k(results: Mapping[str, float], judgments: Mapping[str, int], k: int) -> float:
    relevant = {doc for doc, g in judgments.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked(results)[:k])) / len(relevant)


def mrr_at_k(results: Mapping[str, float], judgments: Mapping[str, int], k: int) -> float:
    for rank, doc in enumerate(ranked(results)[:k], start=1):
        if judgments.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def score_run(run: Run, qrels: Qrels) -> dict[str, float]:
    """Mean nDCG@10, Recall@10, Recall@100 and MRR@10 over the judged queries of ``qrels``."""
    judged = [qid for qid, judgments in qrels.items() if any(g > 0 for g in judgments.values())]
    if not judged:
        return {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    totals = {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    for qid in judged:
        results, judgments = run.get(qid, {}), qrels[qid]
        totals["ndcg@10"] += ndcg_at_k(results, judgments, 10)
        totals["recall@10"] += recall_at_k(results, judgments, 10)
        totals["recall@100"] += recall_at_k(results, judgments, 100)
        totals["mrr@10"] += mrr_at_k(results, judgments, 10)
    return {name: round(value / len(judged), 6) for name, value in totals.items()}


def documents_from_chunks(hits: Sequence[tuple[str, float]], k: int) -> list[tuple[str, float]]:
    """Ordered (document id, chunk score) pairs -> documents ranked by their best chunk, top ``k``."""
    best: dict[str, float] = {}
    for doc, score in hits:
        if doc not in best or score > best[doc]:
            best[doc] = score
    return sorted(best.items(), key=lambda item: (-item[1], item[0]))[:k]


def write_trec_run(path: Path, run: Run, tag: str, depth: int = 100) -> None:
    """TREC run format: ``qid Q0 docid rank score tag``, best first, ``depth`` lines per query."""
    with path.open("w", encoding="utf-8") as handle:
        for qid in sorted(run):
            for rank, doc in enumerate(ranked(run[qid])[:depth], start=1):
                handle.write(f"{qid} Q0 {doc} {rank} {run[qid][doc]:.6f} {tag}\n")


def regression_gate(candidate: float, baseline: float | None, tolerance: float) -> Gate:
    """Pass unless ``candidate`` nDCG@10 falls more than ``tolerance`` below the ``baseline`` version's."""
    name = "retrieval_quality_within_tolerance"
    if baseline is None:
        return Gate(name, True, f"nDCG@10 {candidate:.4f}; no earlier evaluation to compare with")
    drop = baseline - candidate
    if drop > tolerance:
        return Gate(
            name,
            False,
            f"nDCG@10 {candidate:.4f} is {drop:.4f} below the previous version's {baseline:.4f} "
            f"(tolerance {tolerance})",
        )
    return Gate(name, True, f"nDCG@10 {candidate:.4f} (previous {baseline:.4f}, tolerance {tolerance})")


def gain_gate(candidate: float, baseline: float | None, min_gain: float) -> Gate:
    """Pass only when ``candidate`` nDCG@10 beats the served ``baseline`` by at least ``min_gain`` (fine-tuning:
    a model that is not better is not worth a change for users)."""
    name = "retrieval_quality_improves"
    if baseline is None:
        return Gate(name, True, f"nDCG@10 {candidate:.4f}; nothing served to compare with")
    gain = candidate - baseline
    verdict = "at least" if gain >= min_gain else "less than"
    return Gate(
        name,
        gain >= min_gain,
        f"nDCG@10 {candidate:.4f} vs served {baseline:.4f}: gain {gain:+.4f}, {verdict} finetune.min_gain {min_gain}",
    )
