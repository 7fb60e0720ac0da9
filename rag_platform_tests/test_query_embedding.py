"""The ONNX backends (ONNX Runtime + tokenizer, no torch) give sentence-transformers' own vectors for the same
export, and a process that finds the export imports neither torch nor sentence-transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared_env import inherited_environment

from rag_platform.config import EmbeddingSettings
from rag_platform.embedding import (
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    export_onnx,
    make_embedder,
    query_embedder,
)

TEXTS = [
    "how do I roll back an index",
    "x",
    "tokens " * 600,  # past the model's maximum length: truncated the same way
    "Ünïcode, émojis 🚀 and CJK 漢字",
    "  spaces\tand\nnewlines  ",
]


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_vectors_match_sentence_transformers_on_the_same_export(
    tiny_model_dir: Path, tmp_path: Path, backend: str
) -> None:
    from sentence_transformers import SentenceTransformer

    settings = EmbeddingSettings(model=str(tiny_model_dir), backend=backend)
    indexing = make_embedder(settings, tmp_path, workers=2)
    vectors = indexing.embed(TEXTS)  # makes the export, as the first refresh does
    folder, file_name = export_onnx(str(tiny_model_dir), tmp_path, quantized=backend == "onnx-int8")
    library = SentenceTransformer(str(folder), device="cpu", backend="onnx", model_kwargs={"file_name": file_name})
    reference = np.vstack([library.encode([text], normalize_embeddings=True) for text in TEXTS])
    assert (vectors * reference).sum(axis=1).min() > 1 - 1e-5
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query = query_embedder(settings, tmp_path)
    assert isinstance(query, OnnxEmbedder) and query.workers == 1
    assert query.model_id == indexing.model_id == f"{tiny_model_dir}@{backend}"
    assert query.dimension == indexing.dimension == reference.shape[1]
    assert np.abs(query.embed(TEXTS) - vectors).max() <= 1e-6, "one session or two: the same vectors"


def test_torch_is_the_sentence_transformers_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    embedder = query_embedder(EmbeddingSettings(model=str(tiny_model_dir), backend="torch"), tmp_path)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert embedder.embed(TEXTS).shape == (len(TEXTS), embedder.dimension)


@pytest.mark.parametrize("workers", [1, 2])
def test_with_an_export_neither_torch_nor_sentence_transformers_is_imported(
    tiny_model_dir: Path, tmp_path: Path, workers: int
) -> None:
    settings = EmbeddingSettings(model=str(tiny_model_dir), backend="onnx")
    make_embedder(settings, tmp_path).embed(["warm"])
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from rag_platform.config import EmbeddingSettings\n"
        "from rag_platform.embedding import make_embedder\n"
        f"settings = EmbeddingSettings(model={str(tiny_model_dir)!r}, backend='onnx')\n"
        f"make_embedder(settings, Path({str(tmp_path)!r}), workers={workers}).embed(['a query', 'a chunk'])\n"
        "print(json.dumps(sorted(m for m in ('torch', 'sentence_transformers', 'transformers', 'dagster') "
        "if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=inherited_environment()
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
