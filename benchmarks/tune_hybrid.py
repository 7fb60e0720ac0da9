"""Tune hybrid fusion (RRF constant, per-list weights, candidate depth) on a BEIR collection.

Uses the isolated index that `rag-platform eval --dataset DIR` built under the platform home: dense and keyword
candidates are fetched once per query, then every fusion setting is scored on the same candidates.
Writes benchmarks/results/hybrid_tuning.json. Usage: python benchmarks/tune_hybrid.py --dataset DIR
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path
from typing import Any

from rag_platform.config import load_settings
from rag_platform.defs.evaluation import eval_home
from rag_platform.evaluation import BeirDataset, documents_from_chunks, load_beir, score_run
from rag_platform.fusion import reciprocal_rank_fusion
from rag_platform.records import Hit
from rag_platform.retrieval import Searcher, SearchRequest

RESULTS = Path(__file__).parent / "results"


def candidates_for(dataset_dir: Path, dataset: BeirDataset, depth: int) -> dict[str, tuple[list[Hit], list[Hit]]]:
    """Dense and keyword candidates per judged query, from the index ``rag-platform eval`` built."""
    settings = load_settings()
    home = eval_home(settings, dataset_dir)
    if not (home / "index").is_dir():
        raise SystemExit(f"run `rag-platform eval --dataset {dataset_dir}` first (no index under {home})")
    searcher = Searcher(load_settings(home))
    version = searcher.served_version()
    found = {}
    for qid in (q for q in dataset.queries if dataset.qrels.get(q)):
        dense, _ = searcher.retrieve(SearchRequest(dataset.queries[qid], 1, "dense"), version, depth)
        keyword, _ = searcher.retrieve(SearchRequest(dataset.queries[qid], 1, "keyword"), version, depth)
        found[qid] = (dense, keyword)
    return found


NEAR_BEST = 0.001  # nDCG@10 differences below this are noise on 40 queries


def pick(grid: list[dict[str, Any]]) -> dict[str, Any]:
    """Among settings where hybrid is at least the better single mode on every backend and within NEAR_BEST
    of the best such mean nDCG@10: the fewest candidates (cheapest queries), then the most keyword weight,
    then the flattest rank weighting (largest RRF constant)."""
    fair = [r for r in grid if r["min_margin"] >= 0] or grid
    top = max(r["mean_ndcg@10"] for r in fair)
    near = [r for r in fair if r["mean_ndcg@10"] >= top - NEAR_BEST]
    return min(near, key=lambda r: (r["candidates"], -r["w_keyword"], -r["mean_ndcg@10"], -r["rrf_k"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument(
        "--backends", nargs="+", default=["torch"], help="embedding backends whose eval indexes to tune over"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "hybrid_tuning.json")
    args = parser.parse_args()
    dataset = load_beir(args.dataset)
    per_backend = {}
    for backend in args.backends:
        os.environ["RAG_PLATFORM__EMBEDDING__BACKEND"] = backend
        per_backend[backend] = candidates_for(args.dataset, dataset, depth=300)

    def documents(hits: list[Hit]) -> dict[str, float]:
        return dict(documents_from_chunks([(dataset.document_key(h.source), h.score) for h in hits], 100))

    def score(candidates: dict[str, tuple[list[Hit], list[Hit]]], lists: int, rrf_k: int, w: float) -> dict[str, float]:
        run = {
            qid: documents(reciprocal_rank_fusion([dense[:lists], keyword[:lists]], 300, rrf_k, [1.0, w]))
            for qid, (dense, keyword) in candidates.items()
        }
        return score_run(run, dataset.qrels)

    single = {
        backend: {
            name: score_run({qid: documents(c[pick]) for qid, c in candidates.items()}, dataset.qrels)
            for name, pick in (("dense", 0), ("keyword", 1))
        }
        for backend, candidates in per_backend.items()
    }
    grid = []
    for lists, rrf_k, w_keyword in itertools.product(
        (50, 100, 200, 300), (5, 10, 20, 40, 60, 100), (0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0)
    ):
        scores = {b: score(c, lists, rrf_k, w_keyword) for b, c in per_backend.items()}
        # Margin of hybrid over the better single mode, on the worst backend: fusion must help everywhere.
        margin = min(
            s["ndcg@10"] - max(single[b]["dense"]["ndcg@10"], single[b]["keyword"]["ndcg@10"])
            for b, s in scores.items()
        )
        grid.append(
            {
                "candidates": lists,
                "rrf_k": rrf_k,
                "w_dense": 1.0,
                "w_keyword": w_keyword,
                "min_margin": round(margin, 6),
                "mean_ndcg@10": round(sum(s["ndcg@10"] for s in scores.values()) / len(scores), 6),
                "backends": scores,
            }
        )
    grid.sort(key=lambda r: (r["min_margin"] < 0, -r["mean_ndcg@10"], -r["min_margin"]))
    report = {
        "dataset": args.dataset.name,
        "queries": len(dataset.qrels),
        "single": single,
        "best": pick(grid),
        "grid": grid,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"single": single, "top5": grid[:5]}, indent=2))


if __name__ == "__main__":
    main()
