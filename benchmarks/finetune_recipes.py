"""Which unlabelled training pairs help on a BEIR collection: a research bench beside ``finetune.py``.

``finetune.py`` measures the product's path (``rag-platform finetune``, a candidate index version, the gate).
This one isolates the training recipe: each recipe trains the base model for one full epoch with the
product's own loop (``rag_platform.finetuning.train``, default settings but no time budget, so the result does
not depend on the machine's load), then base and fine-tuned models are scored in memory with dense retrieval
over the whole corpus (``title`` + text, 128 tokens), nDCG@10 on the judged queries. Pairs whose anchor
matches an evaluation query are dropped, as in the product.

Recipes: ``title`` (title -> abstract: what the product derives for one-passage documents), ``ict`` (the
inverse cloze task: one sentence -> its passage without it), ``keywords`` (six words drawn from the passage ->
the passage). Writes benchmarks/results/finetune_recipes.json.

    python benchmarks/finetune_recipes.py --dataset DIR [--recipes title ict keywords]
"""

from __future__ import annotations

import argparse
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import write

from rag_platform.config import EmbeddingSettings, FinetuneSettings
from rag_platform.embedding import resolve_model_path
from rag_platform.evaluation import BeirDataset, load_beir, score_run
from rag_platform.finetuning import Pair, TrainingConfig, split_out_queries, train

RECIPES = ("title", "ict", "keywords")


def dense_ndcg(model_path: str, dataset: BeirDataset) -> tuple[float, float]:
    """Mean nDCG@10 of dense retrieval with ``model_path``, and the seconds encoding took."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu", backend="torch")
    model.max_seq_length = 128
    ids = list(dataset.corpus)
    judged = [q for q in dataset.queries if q in dataset.qrels]
    started = time.perf_counter()
    docs = model.encode([f"{t}\n\n{x}" for t, x in (dataset.corpus[i] for i in ids)], normalize_embeddings=True)
    queries = model.encode([dataset.queries[q] for q in judged], normalize_embeddings=True)
    scores = queries @ docs.T
    run = {
        query: {ids[j]: float(scores[row, j]) for j in np.argsort(-scores[row])[:10]}
        for row, query in enumerate(judged)
    }
    return round(score_run(run, dataset.qrels)["ndcg@10"], 4), round(time.perf_counter() - started, 1)


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 4]


def recipe_pairs(recipe: str, dataset: BeirDataset, seed: int) -> list[Pair]:
    rng = random.Random(seed)
    pairs = []
    for doc_id, (title, text) in dataset.corpus.items():
        text = text.split(" @en <")[0]  # DBpedia's text runs on into the next record's RDF
        if recipe == "title" and title:
            pairs.append(Pair(title, text, recipe, doc_id, doc_id))
        elif recipe == "ict" and len(found := sentences(text)) >= 2:
            k = rng.randrange(len(found))
            rest = " ".join(found[:k] + found[k + 1 :])
            pairs.append(Pair(found[k], f"{title}\n\n{rest}", recipe, doc_id, doc_id))
        elif recipe == "keywords" and len(words := [w for w in re.findall(r"[A-Za-z][\w-]+", text) if len(w) > 3]) >= 6:
            pairs.append(Pair(" ".join(rng.sample(words, 6)), f"{title}\n\n{text}", recipe, doc_id, doc_id))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    args = parser.parse_args()
    dataset = load_beir(args.dataset)
    base_path = resolve_model_path(EmbeddingSettings().model)
    defaults = FinetuneSettings()
    config = TrainingConfig(
        seed=defaults.seed,
        batch_size=defaults.batch_size,
        learning_rate=defaults.learning_rate,
        epochs=1,
        budget_s=10**9,
        max_pairs=defaults.max_pairs,
        hard_negatives=0,
        max_tokens=defaults.max_tokens,
    )
    base, _ = dense_ndcg(base_path, dataset)
    report: dict[str, Any] = {"dataset": args.dataset.name, "base_ndcg@10": base, "training": config.describe()}
    queries = list(dataset.queries.values())
    with tempfile.TemporaryDirectory(prefix="rag-ft-recipes-") as tmp:
        for recipe in args.recipes:
            pairs, dropped = split_out_queries(recipe_pairs(recipe, dataset, config.seed), queries)
            result = train(base_path, pairs, Path(tmp) / recipe, config, lambda line: None)
            score, _ = dense_ndcg(str(Path(tmp) / recipe), dataset)
            report[recipe] = {
                "pairs": len(pairs),
                "excluded_pairs": dropped,
                "steps": result.steps,
                "train_seconds": result.seconds,
                "ndcg@10": score,
                "gain": round(score - base, 4),
            }
            print(recipe, report[recipe], flush=True)
    print(write("finetune_recipes.json", report))


if __name__ == "__main__":
    main()
