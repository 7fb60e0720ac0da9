"""How the project's ``Definitions`` are assembled: every asset, check, job, sensor and resource.

Building them reads the configuration and finds the dbt manifest; it writes nothing and runs nothing (the CLI
prepares the home, the manifest included, before any command that loads the definitions)."""

from datetime import timedelta

import dagster as dg

from rag_platform.config import Settings, load_settings
from rag_platform.dbt import find_manifest
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
from rag_platform.defs.sensors import build_corpus_sensor, rebuild_job, refresh_job
from rag_platform.defs.transform import build_dbt_assets, dbt_resource


def index_freshness(settings: Settings) -> dg.FreshnessPolicy:
    """The UI flags the served index as stale (warns at half the window) when no refresh materialized it."""
    window = timedelta(seconds=settings.sensor.max_staleness_s)
    return dg.FreshnessPolicy.time_window(fail_window=window, warn_window=window / 2)


def build_definitions() -> dg.Definitions:
    settings = load_settings(create=False)
    return dg.Definitions(
        assets=[
            raw_documents,
            build_dbt_assets(str(find_manifest(settings.home))),
            document_chunks,
            chunk_embeddings,
            *dg.map_asset_specs(
                lambda spec: spec.replace_attributes(freshness_policy=index_freshness(settings)), [search_index]
            ),
            reranked_query_results,
            retrieval_evaluation,
        ],
        asset_checks=[
            documents_pass_quality_suite,
            chunks_pass_quality_suite,
            embeddings_pass_quality_suite,
            no_documents_quarantined,
        ],
        jobs=[refresh_job, rebuild_job],
        sensors=[build_corpus_sensor(settings.sensor.interval_s)],
        resources={
            "platform": PlatformResource(),
            "dbt": dbt_resource(),
        },
    )
