"""Answer quality: are answers grounded in relevant documents, and does the platform abstain when it should?

Indexes a BEIR-layout collection through the normal refresh job (the isolated index of `rag-platform eval`),
then asks every judged query with the configured answerer (extractive unless COHERE_API_KEY is set) and
records each answer's grounding score (the best question-sentence cosine, which the abstention gate compares
with ``answer.min_similarity``) and whether its citations include a relevant document.

Calibration and evaluation are kept apart:
- calibrate ``answer.min_similarity`` on half of the judged queries (answerable) against two kinds of
  questions the index cannot answer: the same queries with their relevant documents removed from the
  retrieved results, and the queries of a second judged collection on other topics (``--negatives``);
- report abstention precision/recall on the other half of the judged queries plus the hand-written
  unanswerable questions in ``benchmarks/data/unanswerable_questions.txt``, none of which calibrated anything.

Writes benchmarks/results/answer_quality.json. Usage:
    python benchmarks/answer_quality.py --dataset DIR [--negatives DIR] [--out PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common import MODEL_CACHE, write

from rag_platform.answering import Answerer, AskRequest
from rag_platform.config import load_settings
from rag_platform.defs.evaluation import eval_home, run_evaluation
from rag_platform.evaluation import BeirDataset, load_beir
from rag_platform.retrieval import Searcher
from rag_platform.search_request import SearchRequest

UNANSWERABLE = Path(__file__).parent / "data" / "unanswerable_questions.txt"
K = 5
DEPTH_WITHOUT_RELEVANT = 50


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def subset(source: Path, documents: int, cache: Path) -> Path:
    """A copy of the collection with every relevant document and others (by a hash of their id) up to
    ``documents`` in all; queries and judgments unchanged. Keeps a run within a few minutes on two cores."""
    dataset = load_beir(source)
    if documents <= 0 or documents >= len(dataset.corpus):
        return source
    target = cache / "datasets" / f"{source.name}-{documents}"
    if (target / "corpus.jsonl").is_file():
        return target
    wanted = {doc for q in dataset.qrels for doc in relevant(dataset, q)}
    others = sorted(set(dataset.corpus) - wanted, key=lambda d: hashlib.sha256(d.encode()).hexdigest())
    wanted |= set(others[: max(0, documents - len(wanted))])
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    lines = source.joinpath("corpus.jsonl").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and str(json.loads(line)["_id"]) in wanted]
    (target / "corpus.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    shutil.copy(source / "queries.jsonl", target / "queries.jsonl")
    shutil.copy(source / "qrels" / "test.tsv", target / "qrels" / "test.tsv")
    return target


def split(qids: Sequence[str]) -> tuple[list[str], list[str]]:
    """Calibration and held-apart halves, by a hash of the query id (stable, independent of file order)."""
    ordered = sorted(qids, key=lambda q: hashlib.sha256(q.encode()).hexdigest())
    return ordered[::2], ordered[1::2]


def relevant(dataset: BeirDataset, qid: str) -> set[str]:
    return {doc for doc, grade in dataset.qrels.get(qid, {}).items() if grade > 0}


def row(answer: Mapping[str, Any], dataset: BeirDataset, good: set[str]) -> dict[str, Any]:
    cited = [dataset.document_key(c["source"]) for c in answer["citations"]]
    return {
        "question": answer["question"],
        "best_similarity": answer["grounding"]["best_similarity"],
        "cited": cited,
        "cites_relevant": bool(good & set(cited)),
        "top_citation_relevant": bool(cited) and cited[0] in good,
    }


def choose_threshold(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """The gate with the best balanced accuracy (answer the answerable, abstain on the rest); the midpoint
    between neighbouring scores, lowest first among ties."""
    scores = sorted(set(positives) | set(negatives))
    candidates = [scores[0] - 1e-3] + [(a + b) / 2 for a, b in itertools.pairwise(scores)]

    def balanced(t: float) -> float:
        answered = sum(s >= t for s in positives) / len(positives)
        abstained = sum(s < t for s in negatives) / len(negatives)
        return (answered + abstained) / 2

    return round(max(candidates, key=lambda t: (balanced(t), -t)), 4)


def abstention(answerable: Sequence[float], unanswerable: Sequence[float], threshold: float) -> dict[str, Any]:
    """Abstention as a detector of unanswerable questions: precision, recall, accuracy at ``threshold``."""
    true_abstain = sum(s < threshold for s in unanswerable)
    false_abstain = sum(s < threshold for s in answerable)
    abstained = true_abstain + false_abstain
    precision = true_abstain / abstained if abstained else 1.0
    recall = true_abstain / len(unanswerable)
    correct = true_abstain + len(answerable) - false_abstain
    return {
        "threshold": threshold,
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
        "accuracy": round(correct / (len(answerable) + len(unanswerable)), 4),
        "answered_share_of_answerable": round(1 - false_abstain / len(answerable), 4),
    }


def grounded(rows: Sequence[Mapping[str, Any]], threshold: float) -> dict[str, Any]:
    answered = [r for r in rows if r["best_similarity"] >= threshold]
    share = sum(r["cites_relevant"] for r in answered) / len(answered) if answered else 0.0
    top = sum(r["top_citation_relevant"] for r in answered) / len(answered) if answered else 0.0
    return {
        "answered": len(answered),
        "of": len(rows),
        "citations_include_relevant": round(share, 4),
        "first_citation_relevant": round(top, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True, help="BEIR-layout judged collection")
    parser.add_argument("--negatives", type=Path, help="another judged collection whose queries it cannot answer")
    parser.add_argument(
        "--documents", type=int, default=2000, help="index every relevant document and others up to N (0: all)"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()

    os.environ["RAG_PLATFORM__EMBEDDING__EXPORT_DIR"] = str(MODEL_CACHE)  # the refresh job reads the env
    cache = Path(tempfile.gettempdir()) / "rag-platform-bench-answers"
    base = load_settings(cache)
    source = args.dataset
    args.dataset = subset(source, args.documents, cache)
    retrieval = run_evaluation(base, args.dataset, log=log)
    indexed = time.perf_counter()
    settings = load_settings(eval_home(base, args.dataset))
    configured = settings.answer.min_similarity
    # Answer everything (gate off) once, keeping each grounding score: the gate is `score < threshold`, so any
    # threshold's outcome follows from these rows without asking again.
    settings = dataclasses.replace(settings, answer=dataclasses.replace(settings.answer, min_similarity=-1.0))
    searcher = Searcher(settings)
    answerer = Answerer(settings, searcher)
    dataset = load_beir(args.dataset)
    judged = sorted(q for q in dataset.queries if relevant(dataset, q))
    calibration, held_apart = split(judged)

    def ask(question: str) -> dict[str, Any]:
        return answerer.ask(AskRequest(question, k=K))

    answers = {qid: row(ask(dataset.queries[qid]), dataset, relevant(dataset, qid)) for qid in judged}
    without_relevant = []
    for qid in calibration:
        request = SearchRequest(dataset.queries[qid], k=DEPTH_WITHOUT_RELEVANT).validated(settings)
        found = searcher.search(request)
        kept = [r for r in found["results"] if dataset.document_key(r["source"]) not in relevant(dataset, qid)]
        answer = answerer.answer_from(found["query"], kept[:K], found["index_version"])
        without_relevant.append(answer["grounding"]["best_similarity"])
    other_topics = []
    if args.negatives:
        other = load_beir(args.negatives, with_corpus=False)
        other_topics = [ask(text)["grounding"]["best_similarity"] for text in other.queries.values()]
    own = [line.strip() for line in UNANSWERABLE.read_text(encoding="utf-8").splitlines()]
    own = [q for q in own if q and not q.startswith("#")]
    unanswerable = {q: ask(q)["grounding"]["best_similarity"] for q in own}

    positives = [answers[q]["best_similarity"] for q in calibration]
    threshold = choose_threshold(positives, without_relevant + other_topics)
    held = [answers[q]["best_similarity"] for q in held_apart]
    report = {
        "dataset": source.name,
        "documents": len(dataset.corpus),
        "generator": ask(dataset.queries[judged[0]])["generator"],
        "k": K,
        "retrieval": retrieval["modes"]["hybrid"],
        "calibration": {
            "answerable": len(positives),
            "without_relevant_documents": len(without_relevant),
            "other_collection_queries": len(other_topics),
            "threshold": threshold,
            "at_threshold": abstention(positives, without_relevant + other_topics, threshold),
        },
        "held_apart": {
            "at_calibrated": abstention(held, list(unanswerable.values()), threshold),
            "at_configured": abstention(held, list(unanswerable.values()), configured),
        },
        "answers": {
            "all_judged_at_configured": grounded(list(answers.values()), configured),
            "held_apart_at_configured": grounded([answers[q] for q in held_apart], configured),
            "all_judged_gate_off": grounded(list(answers.values()), -1.0),
        },
        "configured_min_similarity": configured,
        "queries": {q: {**answers[q], "half": "calibration" if q in calibration else "held_apart"} for q in judged},
        "unanswerable_scores": unanswerable,
        "seconds": {"index_and_retrieval_eval": round(indexed - started, 1), "total": 0.0},
    }
    report["seconds"]["total"] = round(time.perf_counter() - started, 1)
    path = write("answer_quality.json", report, args.out)
    held_report = report["held_apart"]["at_configured"]
    log(
        f"calibrated min_similarity {threshold} (configured {configured}); held apart at configured: abstention "
        f"precision {held_report['precision']}, recall {held_report['recall']}; answers citing a relevant document "
        f"{report['answers']['all_judged_at_configured']['citations_include_relevant']}; "
        f"{report['seconds']['total']} s; {path}"
    )


if __name__ == "__main__":
    main()
