"""The light query embedder (ONNX Runtime + tokenizer, no torch) gives the indexing embedder's vectors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared_env import inherited_environment

from rag_platform.config import EmbeddingSettings
from rag_platform.embedding import OnnxQueryEmbedder, SentenceTransformerEmbedder, make_embedder, query_embedder

TEXTS = [
    "how do I roll back an index",
    "x",
    "tokens " * 600,  # past the model's maximum length: truncated the same way
    "Ünïcode, émojis 🚀 and CJK 漢字",
    "  spaces\tand\nnewlines  ",
]


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_query_vectors_match_the_indexing_embedder(tiny_model_dir: Path, tmp_path: Path, backend: str) -> None:
    settings = EmbeddingSettings(model=str(tiny_model_dir), backend=backend)
    indexing = make_embedder(settings, tmp_path)
    reference = indexing.embed(TEXTS)  # makes the export, as the first refresh does
    query = query_embedder(settings, tmp_path)
    assert isinstance(query, OnnxQueryEmbedder)
    assert query.model_id == indexing.model_id and query.dimension == indexing.dimension
    vectors = query.embed(TEXTS)
    cosines = (vectors * reference).sum(axis=1)
    assert cosines.min() > 1 - 1e-5
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_without_an_export_or_with_torch_the_indexing_embedder_answers(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert isinstance(
        query_embedder(EmbeddingSettings(model=str(tiny_model_dir), backend="onnx"), tmp_path),
        SentenceTransformerEmbedder,
    )
    assert isinstance(
        query_embedder(EmbeddingSettings(model=str(tiny_model_dir), backend="torch"), tmp_path),
        SentenceTransformerEmbedder,
    )


def test_the_query_path_imports_neither_torch_nor_sentence_transformers(tiny_model_dir: Path, tmp_path: Path) -> None:
    settings = EmbeddingSettings(model=str(tiny_model_dir), backend="onnx")
    make_embedder(settings, tmp_path).embed(["warm"])
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from rag_platform.config import EmbeddingSettings\n"
        "from rag_platform.embedding import query_embedder\n"
        f"settings = EmbeddingSettings(model={str(tiny_model_dir)!r}, backend='onnx')\n"
        f"query_embedder(settings, Path({str(tmp_path)!r})).embed(['a query'])\n"
        "print(json.dumps(sorted(m for m in ('torch', 'sentence_transformers', 'transformers', 'dagster') "
        "if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=inherited_environment()
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
