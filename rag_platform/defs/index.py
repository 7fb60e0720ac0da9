"""document_chunks, chunk_embeddings and search_index, with their blocking quality checks."""

import dagster as dg

from rag_platform import refresh
from rag_platform.defs.ingest import is_full_rebuild
from rag_platform.defs.resources import PlatformResource, RefreshLockResource
from rag_platform.quality import SuiteOutcome


def suite_result(
    context: dg.AssetCheckExecutionContext, platform: PlatformResource, outcome: SuiteOutcome
) -> dg.AssetCheckResult:
    """Record a Great Expectations outcome as a gate of the run and report it as the check's result."""
    refresh.record_gate(platform.settings(), context.run.run_id, outcome.suite, outcome)
    return dg.AssetCheckResult(
        passed=outcome.passed, metadata={"rows": outcome.evaluated_rows, "message": outcome.message}
    )


INDEX_GATES = ("index_matches_ledger", "index_delete_fraction_within_limit", "retrieval_quality_within_tolerance")


@dg.asset(
    group_name="index",
    kinds={"python", "duckdb"},
    deps=[dg.AssetKey("current_documents")],
    description="Token-bounded, heading-aware chunks of changed documents; chunks of removed documents are dropped.",
    code_version="1",
)
def document_chunks(
    context: dg.AssetExecutionContext, platform: PlatformResource, refresh_lock: RefreshLockResource
) -> dg.MaterializeResult:
    stats = refresh.chunk(platform.settings(), context.run_id, is_full_rebuild(context))
    return dg.MaterializeResult(
        metadata=refresh.as_dict(stats),
        data_version=dg.DataVersion(refresh.data_version(platform.settings(), "document_chunks")),
    )


@dg.asset_check(
    asset=dg.AssetKey("current_documents"),
    blocking=True,
    description="Great Expectations suite over the current documents: unique URIs, non-empty, mostly letters.",
)
def documents_pass_quality_suite(
    context: dg.AssetCheckExecutionContext, platform: PlatformResource
) -> dg.AssetCheckResult:
    return suite_result(context, platform, refresh.check_documents(platform.settings()))


@dg.asset_check(asset=document_chunks, blocking=True, description="Great Expectations suite over the live chunks.")
def chunks_pass_quality_suite(
    context: dg.AssetCheckExecutionContext, platform: PlatformResource
) -> dg.AssetCheckResult:
    return suite_result(context, platform, refresh.check_chunks(platform.settings()))


@dg.asset(
    group_name="index",
    kinds={"python", "pytorch"},
    deps=[document_chunks],
    description="Sentence-transformers vectors for chunk texts not yet in the embedding cache (model id + text hash).",
    code_version="1",
)
def chunk_embeddings(
    context: dg.AssetExecutionContext, platform: PlatformResource, refresh_lock: RefreshLockResource
) -> dg.MaterializeResult:
    stats = refresh.embed(platform.settings(), context.run_id, log=context.log.info)
    return dg.MaterializeResult(
        metadata=refresh.as_dict(stats),
        data_version=dg.DataVersion(refresh.data_version(platform.settings(), "chunk_embeddings")),
    )


@dg.asset_check(
    asset=chunk_embeddings, blocking=True, description="Great Expectations suite: dimension, finite values, unit norm."
)
def embeddings_pass_quality_suite(
    context: dg.AssetCheckExecutionContext, platform: PlatformResource
) -> dg.AssetCheckResult:
    return suite_result(
        context, platform, refresh.check_embeddings(platform.settings(), context.run.run_id, is_full_rebuild(context))
    )


@dg.asset(
    group_name="index",
    kinds={"lancedb", "elasticsearch"},
    deps=[chunk_embeddings],
    check_specs=[dg.AssetCheckSpec(name, asset="search_index", blocking=True) for name in INDEX_GATES],
    description="The served search index version: upserts and deletes by chunk id, alias moved once the gates pass.",
    code_version="1",
)
def search_index(context: dg.AssetExecutionContext, platform: PlatformResource, refresh_lock: RefreshLockResource):  # type: ignore[no-untyped-def]
    stats = refresh.index(
        platform.settings(), context.run_id, platform.backend(), is_full_rebuild(context), log=context.log.info
    )
    yield dg.MaterializeResult(
        metadata={k: v for k, v in stats.as_dict().items() if k != "gates"},
        data_version=dg.DataVersion(refresh.data_version(platform.settings(), "search_index")),
    )
    for name in INDEX_GATES:
        gate = stats.gates.get(name, {"passed": True, "message": "not evaluated"})
        yield dg.AssetCheckResult(check_name=name, passed=gate["passed"], metadata={"message": gate["message"]})
