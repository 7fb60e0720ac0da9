"""Fine-tuning on a BEIR collection, as users run it: index the corpus with ``refresh`` (eval.dataset set),
then ``rag-platform finetune`` with the default settings; base vs fine-tuned nDCG@10 come from that one run.

Also scores both versions in dense mode (the fine-tuned model's own effect, without keyword fusion), side by
side in this process after the command. Writes benchmarks/results/finetune.json (or --out).

    python benchmarks/finetune.py --dataset DIR [--budget-s 300] [--home DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import MODEL_CACHE, cli, warm_model_cache, write


def dense_scores(home: Path, dataset_dir: Path, versions: dict[str, str]) -> dict[str, float]:
    """Dense-mode nDCG@10 of each version, each queried with the model it was built with."""
    from rag_platform.config import load_settings
    from rag_platform.evaluation import load_beir
    from rag_platform.retrieval import Searcher
    from rag_platform.scoring import score_version

    dataset = load_beir(dataset_dir, with_corpus=False)
    base = load_settings(home, published=False)
    scores = {}
    for label, (version, model) in versions.items():
        settings = dataclasses.replace(base, embedding=dataclasses.replace(base.embedding, model=model))
        metrics, _ = score_version(Searcher(settings), version, dataset, ["dense"])
        scores[label] = metrics["dense"]["ndcg@10"]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--budget-s", type=int, default=None, help="default: finetune.budget_s")
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from rag_platform.config import load_settings
    from rag_platform.evaluation import load_beir

    dataset_dir = args.dataset.resolve()
    home = (args.home or Path(tempfile.mkdtemp(prefix="rag-finetune-"))).resolve()
    os.environ["RAG_PLATFORM__EVAL__DATASET"] = str(dataset_dir)
    os.environ["RAG_PLATFORM__EMBEDDING__EXPORT_DIR"] = str(MODEL_CACHE)
    os.environ["RAG_PLATFORM_HOME"] = str(home)
    export_seconds = warm_model_cache()
    corpus = home / "corpus"
    dataset = load_beir(dataset_dir)
    if not corpus.is_dir():
        dataset.to_markdown_files(corpus)
    started = time.perf_counter()
    refresh = cli(home, "refresh", "--source", str(corpus))
    print(f"indexed {refresh['chunks']['total']} chunks in {refresh['seconds']} s", file=sys.stderr)
    finetune_args = ["finetune"] + (["--budget-s", str(args.budget_s)] if args.budget_s else [])
    result = cli(home, *finetune_args)
    print(
        f"base {result['base']['ndcg@10']} -> candidate {result['candidate']['ndcg@10']}, "
        f"published={result['published']}",
        file=sys.stderr,
    )
    base_model = result["model"]["base_model"]
    dense = dense_scores(
        home,
        dataset_dir,
        {
            "base": (result["base"]["index_version"], base_model),
            "candidate": (result["candidate"]["index_version"], result["model"]["path"]),
        },
    )
    report: dict[str, Any] = {
        "dataset": dataset_dir.name,
        "documents": len(dataset.corpus),
        "queries": sum(1 for q in dataset.queries if dataset.qrels.get(q)),
        "chunks": refresh["chunks"]["total"],
        "refresh_seconds": refresh["seconds"],
        "model_export_seconds": export_seconds,
        "finetune_wall_seconds": result["wall_seconds"],
        "finetune_peak_rss_mib": result["peak_rss_mib"],
        # The home is a scratch folder: the model's path is reported relative to it.
        "model": {**result["model"], "path": str(Path(result["model"]["path"]).relative_to(home))},
        "hybrid_ndcg@10": {"base": result["base"]["ndcg@10"], "candidate": result["candidate"]["ndcg@10"]},
        "hybrid_gain": round(result["candidate"]["ndcg@10"] - result["base"]["ndcg@10"], 6),
        "dense_ndcg@10": dense,
        "dense_gain": round(dense["candidate"] - dense["base"], 6),
        "training": dataclasses.asdict(load_settings(home).finetune),
        "min_gain": result["min_gain"],
        "published": result["published"],
        "message": result["message"],
        "total_seconds": round(time.perf_counter() - started, 3),
    }
    path = write("finetune.json", report, args.out)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
