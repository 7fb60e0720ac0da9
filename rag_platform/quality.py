"""Great Expectations suites for chunks and embeddings, run on an ephemeral context.

Each suite returns a ``Gate`` naming every failed expectation with a sample of offending values, so
a blocked refresh says exactly why.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from rag_platform.gates import Gate
from rag_platform.records import QuarantineCode

if TYPE_CHECKING:
    import pandas as pd


def _run_suite(name: str, frame: pd.DataFrame, expectations: list[Any]) -> Gate:
    if frame.empty:
        return Gate.from_failures(name, 0, ())
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas(name).add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    )
    suite = gx.ExpectationSuite(name=name)
    for expectation in expectations:
        suite.add_expectation(expectation)
    result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    failures = []
    for item in result.results:
        if item.success:
            continue
        config = item.expectation_config
        if config is None:
            failures.append("an expectation failed without a configuration")
            continue
        column = config.kwargs.get("column", "")
        sample = item.result.get("partial_unexpected_list") or item.result.get("observed_value")
        count = item.result.get("unexpected_count")
        failures.append(f"{config.type} on {column}: {count} unexpected, e.g. {str(sample)[:120]}")
    if not result.success and not failures:
        failures.append("the suite failed")
    return Gate.from_failures(name, len(frame), failures)


def letter_share(text: str) -> float:
    """Share of letters (any script) among all characters: informational, not a gate (README "Letter share")."""
    return sum(c.isalpha() for c in text) / max(len(text), 1)


def nothing_to_search(text: str) -> bool:
    """True when the text holds no letter and no digit in any script: no keyword can match it and its vector
    means nothing. Tables of numbers, code and non-Latin prose all pass; "mostly non-letters" is content."""
    return not any(c.isalnum() for c in text)


def document_problem(text: str) -> tuple[str, str] | None:
    """The per-document quality rule, applied to one document at ingest: ``(code, reason)`` when the document
    is quarantined, None when it may be indexed. A per-document problem never blocks the corpus."""
    if nothing_to_search(text):
        return QuarantineCode.NOTHING_TO_SEARCH, "no letter or digit in the text: nothing a search could match"
    return None


def validate_documents(frame: pd.DataFrame) -> Gate:
    """Current documents, corpus-level rules only (they block): URIs present and unique, texts non-empty.
    Rules about one document's content are applied at ingest by ``document_problem`` and quarantine it."""
    import great_expectations as gx

    return _run_suite(
        "documents_pass_quality_suite",
        frame,
        [
            gx.expectations.ExpectColumnValuesToNotBeNull(column="uri"),
            gx.expectations.ExpectColumnValuesToBeUnique(column="uri"),
            gx.expectations.ExpectColumnValuesToBeBetween(column="char_length", min_value=1),
        ],
    )


def validate_chunks(frame: pd.DataFrame, max_tokens: int) -> Gate:
    """Chunks: ids unique and non-null, text non-empty, token counts within (0, max_tokens]."""
    import great_expectations as gx

    return _run_suite(
        "chunks_pass_quality_suite",
        frame,
        [
            gx.expectations.ExpectColumnValuesToNotBeNull(column="chunk_id"),
            gx.expectations.ExpectColumnValuesToBeUnique(column="chunk_id"),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="text_length"),
            gx.expectations.ExpectColumnValuesToBeBetween(column="text_length", min_value=1),
            gx.expectations.ExpectColumnValuesToBeBetween(column="token_count", min_value=1, max_value=max_tokens),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="document_id"),
        ],
    )


def embedding_profile(hashes: list[str], vectors: list[Any]) -> pd.DataFrame:
    """One row per vector: its dimension, whether all values are finite, and its L2 norm."""
    import pandas as pd

    dims, finite, norms = [], [], []
    for vector in vectors:
        array = np.asarray(vector, dtype=np.float64)
        dims.append(int(array.size))
        finite.append(bool(np.isfinite(array).all()))
        norms.append(float(np.linalg.norm(array)) if np.isfinite(array).all() else float("nan"))
    return pd.DataFrame({"text_hash": hashes, "dim": dims, "finite": finite, "norm": norms})


def validate_embeddings(frame: pd.DataFrame, dim: int, tolerance: float = 1e-3) -> Gate:
    """Embeddings: the model's dimension, finite values, unit norm."""
    import great_expectations as gx

    return _run_suite(
        "embeddings_pass_quality_suite",
        frame,
        [
            gx.expectations.ExpectColumnValuesToBeInSet(column="dim", value_set=[dim]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="norm", min_value=1 - tolerance, max_value=1 + tolerance
            ),
            gx.expectations.ExpectColumnValuesToBeUnique(column="text_hash"),
        ],
    )
