"""How the project's ``Definitions`` are assembled: every asset, check, job, sensor and resource.

Building them reads the configuration and finds the dbt manifest; it writes nothing and runs nothing (the CLI
prepares the home, the manifest included, before any command that loads the definitions)."""

import dagster as dg

from rag_platform.change_detection import oldest_pending_change_s, pending_changes, warehouse_documents
from rag_platform.config import load_settings
from rag_platform.dbt import find_manifest
from rag_platform.defs.finetune import fine_tuned_model
from rag_platform.defs.index import (
    chunk_embeddings,
    chunks_pass_quality_suite,
    document_chunks,
    documents_pass_quality_suite,
    embeddings_pass_quality_suite,
    search_index,
)
from rag_platform.defs.ingest import no_documents_quarantined, raw_documents
from rag_platform.defs.query import reranked_query_results, retrieval_evaluation
from rag_platform.defs.resources import PlatformResource
from rag_platform.defs.sensors import build_corpus_sensor, finetune_job, rebuild_job, refresh_job
from rag_platform.defs.transform import build_dbt_assets, dbt_resource


@dg.asset_check(
    asset=dg.AssetKey("search_index"),
    description="The served index reflects the sources: no change on disk older than sensor.max_staleness_s is "
    "missing from it. Measures lag from a source change, not time since the last refresh, so a quiet, "
    "up-to-date index stays fresh.",
)
def search_index_reflects_sources() -> dg.AssetCheckResult:
    settings = load_settings()
    state = warehouse_documents(settings)
    if state is None:
        return dg.AssetCheckResult(passed=False, metadata={"message": "no read snapshot yet"})
    folders, known = state
    pending = pending_changes(settings, known, folders)
    lag = oldest_pending_change_s(pending)
    return dg.AssetCheckResult(
        passed=lag <= settings.sensor.max_staleness_s,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"pending": pending.changes.describe(), "oldest_pending_change_s": round(lag, 1)},
    )


def build_definitions() -> dg.Definitions:
    settings = load_settings(create=False)
    return dg.Definitions(
        assets=[
            raw_documents,
            build_dbt_assets(str(find_manifest(settings.home))),
            document_chunks,
            chunk_embeddings,
            search_index,
            reranked_query_results,
            retrieval_evaluation,
            fine_tuned_model,
        ],
        asset_checks=[
            documents_pass_quality_suite,
            chunks_pass_quality_suite,
            embeddings_pass_quality_suite,
            no_documents_quarantined,
            search_index_reflects_sources,
        ],
        jobs=[refresh_job, rebuild_job, finetune_job],
        sensors=[build_corpus_sensor(settings.sensor.interval_s)],
        resources={
            "platform": PlatformResource(),
            "dbt": dbt_resource(),
        },
    )
