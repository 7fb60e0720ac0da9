"""The fine-tuning step: pairs from the live chunks, hard negatives from the served vectors, a versioned model
under the platform home, recorded in the warehouse (``fine_tuned_models``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag_platform.config import load_settings
from rag_platform.embedding import resolve_model_path
from rag_platform.evaluation import load_beir
from rag_platform.finetuning import (
    ChunkRow,
    TrainingConfig,
    corpus_pairs,
    data_version,
    mine_hard_negatives,
    model_version,
    sample_pairs,
    saved_result,
    split_out_queries,
    train,
)
from rag_platform.index_ledger import vectors_for
from rag_platform.ingest import now
from rag_platform.parts import RunParts

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class FineTuned:
    name: str
    version: str
    path: str
    base_model: str
    data_version: str
    pairs: int
    excluded_pairs: int
    hard_negatives: int
    train_seconds: float
    steps: int
    reused: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_config(parts: RunParts, budget_s: int | None) -> TrainingConfig:
    f = parts.settings.finetune
    return TrainingConfig(
        seed=f.seed,
        batch_size=f.batch_size,
        learning_rate=f.learning_rate,
        epochs=f.epochs,
        budget_s=budget_s if budget_s is not None else f.budget_s,
        max_pairs=f.max_pairs,
        hard_negatives=f.hard_negatives,
        max_tokens=f.max_tokens,
    )


def models_dir(home: Path) -> Path:
    return home / "models"


def fine_tune(parts: RunParts, run_id: str, budget_s: int | None = None, log: Log = print) -> FineTuned:
    """Derive the pairs, mine negatives and train (or reuse the model version these inputs already made)."""
    settings = parts.settings
    if not settings.eval.dataset:
        raise ValueError("finetune needs eval.dataset: the candidate is published only when it scores better")
    queries = list(load_beir(Path(settings.eval.dataset), with_corpus=False).queries.values())
    base_model = load_settings(settings.home, published=False).embedding.model  # trained from, every time
    config = training_config(parts, budget_s)
    embedder = parts.embedder  # the served model: what the current index's vectors come from
    with parts.warehouse() as con:
        rows = [
            ChunkRow(*r)
            for r in con.execute(
                """SELECT chunk_id, document_id, ordinal, coalesce(title, ''), coalesce(heading_path, ''), text,
                          text_hash FROM chunks WHERE chunker = ? ORDER BY chunk_id""",
                [parts.chunker_config.fingerprint],
            ).fetchall()
        ]
        served = vectors_for(con, embedder.model_id, sorted({r.text_hash for r in rows}))
    if not rows:
        raise ValueError("nothing to fine-tune on: the index holds no chunks; run rag-platform refresh first")
    pairs, excluded = split_out_queries(corpus_pairs(rows), queries)
    pairs = sample_pairs(pairs, config.max_pairs, config.seed)
    log(f"fine-tuning: {len(pairs)} pairs from {len(rows)} chunks ({excluded} matching evaluation queries left out)")
    if config.hard_negatives and pairs and served:
        hashes = sorted(served)
        first_row: dict[str, ChunkRow] = {}
        for r in rows:
            first_row.setdefault(r.text_hash, r)
        anchors = embedder.embed([p.anchor for p in pairs])
        matrix = np.asarray([served[h] for h in hashes], dtype=np.float32)
        pairs = mine_hard_negatives(
            pairs,
            anchors,
            matrix,
            [first_row[h].document_id for h in hashes],
            [first_row[h].text for h in hashes],
            hashes,
        )
    mined = sum(1 for p in pairs if p.negative)
    data = data_version(pairs)
    version = model_version(base_model, data, config)
    slug = "".join(ch if ch.isalnum() else "-" for ch in Path(base_model).name)[:40]
    target = models_dir(settings.home) / f"{slug}-ft-{version}"
    result = saved_result(target)
    reused = result is not None
    if result is None:
        if not pairs:
            raise ValueError("no training pairs: every pair matched an evaluation query")
        log(f"fine-tuning {base_model}: {mined} of {len(pairs)} pairs with a hard negative, {config.budget_s} s budget")
        result = train(resolve_model_path(base_model), pairs, target, config, log)
    else:
        log(f"fine-tuning: model version {version} exists at {target}; reusing it")
    tuned = FineTuned(
        name=target.name,
        version=version,
        path=str(target),
        base_model=base_model,
        data_version=data,
        pairs=len(pairs),
        excluded_pairs=excluded,
        hard_negatives=mined,
        train_seconds=result.seconds,
        steps=result.steps,
        reused=reused,
    )
    with parts.warehouse() as con:
        con.execute(
            "INSERT OR REPLACE INTO fine_tuned_models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                version,
                base_model,
                str(target),
                data,
                len(pairs),
                excluded,
                mined,
                result.seconds,
                result.steps,
                json.dumps(config.describe()),
                run_id,
                now(),
            ],
        )
    return tuned
