"""``rag-platform finetune``: run the ``finetune_model`` job (the ``fine_tuned_model`` asset), then build a
candidate index version with that model through the refresh job, scored beside the served one and published
only when it is better; the comparison goes to the warehouse and to both assets' observations."""

from __future__ import annotations

import logging
from typing import Any

import dagster as dg

from rag_platform import warehouse
from rag_platform.backends import make_backend
from rag_platform.config import Settings
from rag_platform.defs.runner import execute_job, execute_refresh
from rag_platform.defs.sensors import FINETUNE_JOB
from rag_platform.index_gates import RETRIEVAL_GAIN
from rag_platform.ingest import now
from rag_platform.locking import refresh_lock
from rag_platform.pipeline.run_record import run_summary
from rag_platform.warehouse import rows_as_dicts

logger = logging.getLogger("rag_platform.finetune")


class FinetuneError(ValueError):
    """Fine-tuning cannot start: no evaluation set, or nothing served to learn from."""


def run_finetune(settings: Settings, budget_s: int | None, log_level: str = "CRITICAL") -> dict[str, Any]:
    """Train (the ``finetune_model`` job), build and score the candidate (the refresh job with the model
    override), and return the contract's result. ``blocked_by`` lists gates other than the gain that failed."""
    if not settings.eval.dataset:
        raise FinetuneError("finetune needs eval.dataset in config (a BEIR-layout folder judging the served corpus)")
    served = make_backend(settings).resolve_alias(settings.index.alias)
    if served is None:
        raise FinetuneError("nothing is served yet: run rag-platform refresh --source DIR first")
    ops = {"fine_tuned_model": {"config": {"budget_s": budget_s or 0}}}
    trained = execute_job(settings, FINETUNE_JOB, "finetune", log_level, {"home": str(settings.home)}, ops)
    if not trained.success:
        raise RuntimeError(f"fine-tuning failed: {trained.failure}")
    with warehouse.owner_reader(settings) as con:
        rows = rows_as_dicts(con, "SELECT * FROM fine_tuned_models WHERE run_id = ?", [trained.run_id]) if con else []
    if not rows:
        raise RuntimeError("fine-tuning recorded no model")
    model = rows[0]
    min_gain = settings.finetune.min_gain
    logger.info(f"building a candidate index version with {model['path']}")
    outcome = execute_refresh(
        settings, False, trigger="finetune", log_level=log_level, embedding_model=model["path"], min_gain=min_gain
    )
    summary = run_summary(settings, outcome.run_id)
    candidate = summary["index"]["version"]
    with warehouse.owner_reader(settings) as con:
        scores = {
            r["index_name"]: r["ndcg_at_10"]
            for r in (
                rows_as_dicts(con, "SELECT index_name, ndcg_at_10 FROM evaluations WHERE run_id = ?", [outcome.run_id])
                if con
                else []
            )
        }
    blocked_by = [name for name, g in summary["gates"].items() if not g["passed"] and name != RETRIEVAL_GAIN]
    if not outcome.success and not blocked_by and RETRIEVAL_GAIN not in summary["gates"]:
        raise RuntimeError(f"building the candidate index failed: {outcome.failure}")
    published = bool(summary["published"])
    base_ndcg, candidate_ndcg = scores.get(served), scores.get(candidate)
    _record(settings, model["version"], served, candidate, base_ndcg, candidate_ndcg, published, outcome.run_id)
    serving = make_backend(settings).resolve_alias(settings.index.alias)
    gain_gate = summary["gates"].get(RETRIEVAL_GAIN, {})
    return {
        "model": {
            "name": model["path"].rsplit("/", 1)[-1],
            "version": model["version"],
            "path": model["path"],
            "pairs": model["pairs"],
            "train_seconds": model["train_seconds"],
            "base_model": model["base_model"],
            "excluded_pairs": model["excluded_pairs"],
            "hard_negatives": model["hard_negatives"],
            "steps": model["steps"],
        },
        "base": {"ndcg@10": base_ndcg, "index_version": served},
        "candidate": {"ndcg@10": candidate_ndcg, "index_version": candidate},
        "min_gain": min_gain,
        "published": published,
        "index_version": serving,
        "message": gain_gate.get("message", ""),
        "blocked_by": blocked_by,
        "runs": {"finetune": trained.run_id, "candidate": outcome.run_id},
    }


def _record(
    settings: Settings,
    version: str,
    served: str,
    candidate: str | None,
    base_ndcg: float | None,
    candidate_ndcg: float | None,
    published: bool,
    run_id: str,
) -> None:
    """The comparison in the warehouse (``fine_tune_comparisons``) and as observations of the fine-tuned model
    and of the retrieval evaluation, which the UI shows beside their materializations."""
    dataset = settings.eval.dataset
    with refresh_lock(settings.lock_path), warehouse.writer(settings) as con:
        con.execute(
            "INSERT INTO fine_tune_comparisons VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                version,
                dataset,
                served,
                candidate,
                base_ndcg,
                candidate_ndcg,
                settings.finetune.min_gain,
                published,
                run_id,
                now(),
            ],
        )
    warehouse.export_snapshot(settings)
    metadata: dict[str, Any] = {
        "model_version": version,
        "base_ndcg_at_10": dg.MetadataValue.float(base_ndcg if base_ndcg is not None else float("nan")),
        "candidate_ndcg_at_10": dg.MetadataValue.float(candidate_ndcg if candidate_ndcg is not None else float("nan")),
        "min_gain": dg.MetadataValue.float(settings.finetune.min_gain),
        "published": published,
        "served_index": served,
        "candidate_index": candidate or "",
        "dataset": dataset,
    }
    instance = dg.DagsterInstance.get()
    for key in ("fine_tuned_model", "retrieval_evaluation"):
        instance.report_runless_asset_event(dg.AssetObservation(asset_key=key, metadata=metadata))
