"""Tune hybrid fusion (RRF constant, per-list weights, candidate depth) on a BEIR collection.

Uses the isolated index that `rag-platform eval --dataset DIR` built under the platform home: dense and keyword
candidates are fetched once per query, then every fusion setting is scored on the same candidates.
Writes benchmarks/results/hybrid_tuning.json. Usage: python benchmarks/tune_hybrid.py --dataset DIR
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from rag_platform.config import load_settings
from rag_platform.eval_runner import eval_home
from rag_platform.evaluation import documents_from_chunks, load_beir, score_run
from rag_platform.fusion import reciprocal_rank_fusion
from rag_platform.retrieval import Searcher, SearchRequest

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=RESULTS / "hybrid_tuning.json")
    args = parser.parse_args()
    settings = load_settings()
    home = eval_home(settings, args.dataset)
    if not (home / "index").is_dir():
        raise SystemExit(f"run `rag-platform eval --dataset {args.dataset}` first (no index under {home})")
    dataset = load_beir(args.dataset)
    eval_settings = load_settings(home)
    searcher = Searcher(eval_settings)
    version = searcher.served_version()
    judged = [q for q in dataset.queries if dataset.qrels.get(q)]
    depth = 300
    candidates = {}
    for qid in judged:
        dense, _ = searcher.retrieve(SearchRequest(dataset.queries[qid], 1, "dense"), version, depth)
        keyword, _ = searcher.retrieve(SearchRequest(dataset.queries[qid], 1, "keyword"), version, depth)
        candidates[qid] = (dense, keyword)

    def score(lists: int, rrf_k: int, w_dense: float, w_keyword: float) -> dict[str, float]:
        run = {}
        for qid, (dense, keyword) in candidates.items():
            fused = reciprocal_rank_fusion([dense[:lists], keyword[:lists]], 300, rrf_k, [w_dense, w_keyword])
            run[qid] = dict(documents_from_chunks([(dataset.document_key(h.source), h.score) for h in fused], 100))
        return score_run(run, dataset.qrels)

    single = {}
    for name, pick in (("dense", 0), ("keyword", 1)):
        run = {
            qid: dict(documents_from_chunks([(dataset.document_key(h.source), h.score) for h in c[pick]], 100))
            for qid, c in candidates.items()
        }
        single[name] = score_run(run, dataset.qrels)
    grid = []
    for lists, rrf_k, w_keyword in itertools.product(
        (50, 100, 200, 300), (10, 20, 40, 60, 100), (0.2, 0.35, 0.5, 0.7, 1.0)
    ):
        grid.append(
            {
                "candidates": lists,
                "rrf_k": rrf_k,
                "w_dense": 1.0,
                "w_keyword": w_keyword,
                **score(lists, rrf_k, 1.0, w_keyword),
            }
        )
    grid.sort(key=lambda r: (-r["ndcg@10"], -r["recall@100"]))
    report = {"dataset": str(args.dataset), "queries": len(judged), "single": single, "best": grid[0], "grid": grid}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"single": single, "top5": grid[:5]}, indent=2))


if __name__ == "__main__":
    main()
