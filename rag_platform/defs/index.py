"""document_chunks, chunk_embeddings and search_index, with their blocking quality checks."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from rag_platform.defs.ingest import is_full_rebuild
from rag_platform.defs.resources import PlatformResource
from rag_platform.gates import Gate
from rag_platform.index_gates import INDEX_GATES
from rag_platform.pipeline import steps
from rag_platform.pipeline.data_versions import data_version


def gate_result(context: dg.AssetCheckExecutionContext, platform: PlatformResource, gate: Gate) -> dg.AssetCheckResult:
    """Record a suite's outcome as a gate of the run and report it as the check's result."""
    steps.gate_recorded(platform.parts, context.run.run_id, gate)
    return dg.AssetCheckResult(passed=gate.passed, metadata={"rows": gate.evaluated_rows, "message": gate.message})


@dg.asset(
    group_name="index",
    kinds={"python", "duckdb"},
    deps=[dg.AssetKey("current_documents")],
    description="Token-bounded, heading-aware chunks of changed documents; chunks of removed documents are dropped.",
    code_version="1",
)
def document_chunks(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
    parts = platform.parts
    stats = steps.chunk(parts, context.run_id, is_full_rebuild(context))
    return dg.MaterializeResult(
        metadata=steps.as_dict(stats), data_version=dg.DataVersion(data_version(parts, "document_chunks"))
    )


@dg.asset_check(
    asset=dg.AssetKey("current_documents"),
    blocking=True,
    description="Great Expectations suite over the current documents: unique URIs, non-empty, mostly letters.",
)
def documents_pass_quality_suite(
    context: dg.AssetCheckExecutionContext, platform: PlatformResource
) -> dg.AssetCheckResult:
    return gate_result(context, platform, steps.check_documents(platform.parts))


@dg.asset_check(asset=document_chunks, blocking=True, description="Great Expectations suite over the live chunks.")
def chunks_pass_quality_suite(
    context: dg.AssetCheckExecutionContext, platform: PlatformResource
) -> dg.AssetCheckResult:
    return gate_result(context, platform, steps.check_chunks(platform.parts))


@dg.asset(
    group_name="index",
    kinds={"python", "pytorch"},
    deps=[document_chunks],
    description="Sentence-transformers vectors for chunk texts not yet in the embedding cache (model id + text hash).",
    code_version="1",
)
def chunk_embeddings(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
    parts = platform.parts
    stats = steps.embed(parts, context.run_id, log=context.log.info)
    return dg.MaterializeResult(
        metadata=steps.as_dict(stats), data_version=dg.DataVersion(data_version(parts, "chunk_embeddings"))
    )


@dg.asset_check(
    asset=chunk_embeddings, blocking=True, description="Great Expectations suite: dimension, finite values, unit norm."
)
def embeddings_pass_quality_suite(
    context: dg.AssetCheckExecutionContext, platform: PlatformResource
) -> dg.AssetCheckResult:
    gate = steps.check_embeddings(platform.parts, context.run.run_id, is_full_rebuild(context))
    return gate_result(context, platform, gate)


@dg.asset(
    group_name="index",
    kinds={"lancedb", "elasticsearch"},
    deps=[chunk_embeddings],
    check_specs=[dg.AssetCheckSpec(name, asset="search_index", blocking=True) for name in INDEX_GATES],
    description="The served search index version: upserts and deletes by chunk id, alias moved once the gates pass.",
    code_version="1",
)
def search_index(context: dg.AssetExecutionContext, platform: PlatformResource) -> Iterator[Any]:
    parts = platform.parts
    stats = steps.index(parts, context.run_id, is_full_rebuild(context), log=context.log.info)
    yield dg.MaterializeResult(
        metadata={k: v for k, v in stats.as_dict().items() if k != "gates"},
        data_version=dg.DataVersion(data_version(parts, "search_index")),
    )
    for name in INDEX_GATES:
        gate = stats.gates.get(name, Gate(name, True, "not evaluated"))
        yield dg.AssetCheckResult(check_name=name, passed=gate.passed, metadata={"message": gate.message})
