"""Checks of settings against the domain's own definitions: the embedding runtimes, the Elasticsearch vector
index types, the rerank providers, and the model's input window. ``config`` (a base module) checks every key's
type and range; the checks that need domain knowledge live here, so the import layers stay one-way."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rag_platform.config import ConfigError

if TYPE_CHECKING:
    from rag_platform.config import Settings

# The chunker counts tokens without the model's special tokens; a BERT-style model adds [CLS] and [SEP].
SPECIAL_TOKENS = 2


def model_window(model: str) -> int | None:
    """The model's ``max_seq_length`` as sentence-transformers loads it, read from its saved files; None when
    the model is not a local folder (a hub id: checked when it loads)."""
    from rag_platform.embedding import EmbeddingError, resolve_model_path, saved_max_seq_length

    try:
        return saved_max_seq_length(Path(resolve_model_path(model)))
    except EmbeddingError:
        return None


def check_settings(settings: Settings) -> None:
    """Raise ConfigError (one line) when a setting names something the platform does not have, or asks for
    chunks longer than the model reads (they would be cut silently)."""
    from rag_platform.backends.elasticsearch import INDEX_OPTIONS
    from rag_platform.embedding import RUNTIMES
    from rag_platform.search_request import RERANKERS

    e, c = settings.embedding, settings.chunker
    for key, value, choices in [
        ("embedding.backend", e.backend, RUNTIMES),
        ("index.index_options", settings.index.index_options, INDEX_OPTIONS),
        ("rerank.provider", settings.rerank.provider, RERANKERS),
    ]:
        if value not in choices:
            raise ConfigError(f"config: {key} must be one of {', '.join(choices)}, got {value!r}")
    window = model_window(e.model)
    if window is not None and c.max_tokens > window - SPECIAL_TOKENS:
        raise ConfigError(
            f"config: chunker.max_tokens ({c.max_tokens}) must be at most {window - SPECIAL_TOKENS}: the model "
            f"{e.model!r} reads {window} tokens, {SPECIAL_TOKENS} of them its own markers; longer chunks would be cut"
        )
