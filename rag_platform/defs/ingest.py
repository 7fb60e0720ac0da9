"""raw_documents: scan the sources and append document versions to the warehouse."""

from collections.abc import Iterator

import dagster as dg

from rag_platform.defs.resources import PlatformResource
from rag_platform.pipeline import steps

FULL_TAG = "rag/full"


def is_full_rebuild(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> bool:
    """Full rebuilds are runs of the rebuild job, tagged ``rag/full=true``."""
    return context.run.tags.get(FULL_TAG) == "true"


@dg.asset(
    group_name="ingest",
    kinds={"python", "duckdb"},
    description="Append-only document versions (and deletion tombstones) read from the registered source folders.",
    code_version="1",
    # Conditional: when nothing changed since the last succeeded run, nothing is yielded and every downstream
    # step (dbt, chunks, embeddings, index, checks, standing queries) is skipped.
    output_required=False,
)
def raw_documents(context: dg.AssetExecutionContext, platform: PlatformResource) -> Iterator[dg.MaterializeResult]:
    parts = platform.parts
    ingested = steps.ingest(parts, context.run_id, is_full_rebuild(context))
    context.log.info(f"documents: {ingested.stats.as_dict()}")
    if ingested.current_since is not None:
        context.log.info(f"nothing changed since run {ingested.current_since}; the served index is current")
        return
    yield dg.MaterializeResult(
        metadata={
            **ingested.stats.as_dict(),
            "settings_fingerprint": parts.settings_fingerprint,
            "settings": dg.MetadataValue.json(parts.settings.as_dict()),
        },
        data_version=dg.DataVersion(ingested.data_version),
    )


@dg.asset_check(
    asset=raw_documents,
    description="Documents kept out of the index (unreadable, binary, empty, bad encoding, too large), with reasons. "
    "Warns without blocking: the rest of the corpus still refreshes.",
)
def no_documents_quarantined(platform: PlatformResource) -> dg.AssetCheckResult:
    rows = steps.quarantine_report(platform.parts)
    table = "\n".join(
        ["| source | code | reason | since |", "|---|---|---|---|"]
        + [f"| {r['source']} | {r['code']} | {r['reason']} | {r['since']} |" for r in rows]
    )
    return dg.AssetCheckResult(
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined": len(rows), "documents": dg.MetadataValue.md(table)},
    )
