"""Embedding backends: right shape, unit norm, faithful to the torch reference; default selection; the
``benchmark embed`` JSON contract. Correctness only: speed is measured in benchmarks/, not asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared_env import inherited_environment

from rag_platform.config import EmbeddingSettings, load_settings
from rag_platform.embed_benchmark import available_runtimes, sample_texts, select_default
from rag_platform.embedding import (
    RUNTIMES,
    EmbeddingError,
    make_embedder,
    onnx_export_dir,
    resolve_model_path,
)

MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One platform home for the module, so the ONNX exports made by the first test are reused by the rest."""
    return tmp_path_factory.mktemp("embedding-home")


@pytest.fixture(scope="module")
def texts(home: Path) -> list[str]:
    return sample_texts(load_settings(home), 48)


@pytest.fixture(scope="module")
def reference(texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model_path(MODEL), backend="torch")
    return np.asarray(model.encode(texts, normalize_embeddings=True))


def test_onnx_backends_are_installed_with_the_project() -> None:
    assert available_runtimes() == list(RUNTIMES)


@pytest.mark.parametrize("backend", RUNTIMES)
def test_backend_vectors_match_torch(backend: str, home: Path, texts: list[str], reference: np.ndarray) -> None:
    embedder = make_embedder(EmbeddingSettings(MODEL, backend), home / "cache")
    vectors = embedder.embed(texts)
    assert vectors.shape == (len(texts), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(vectors * reference, axis=1)
    assert cosines.min() >= 0.99, (backend, float(cosines.min()))
    assert embedder.model_id == f"{MODEL}@{backend}"


def test_onnx_export_is_cached_under_the_home(home: Path, texts: list[str]) -> None:
    cache = home / "cache"
    folder = onnx_export_dir(MODEL, cache)
    make_embedder(EmbeddingSettings(MODEL, "onnx-int8"), cache).embed(texts[:2])
    files = sorted((folder / "onnx").glob("*.onnx"))
    assert "model.onnx" in {f.name for f in files} and any("qint8" in f.name for f in files)
    stamps = {f: f.stat().st_mtime_ns for f in files}
    make_embedder(EmbeddingSettings(MODEL, "onnx-int8"), cache).embed(texts[:2])
    assert {f: f.stat().st_mtime_ns for f in files} == stamps, "a second load must not export again"


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(EmbeddingError, match="unknown embedding backend 'tensorrt'"):
        make_embedder(EmbeddingSettings(MODEL, "tensorrt"))


def test_default_is_the_fastest_backend_that_holds_quality() -> None:
    measured = {
        "torch": {"chunks_per_s": 50.0, "min_cosine": 1.0},
        "onnx": {"chunks_per_s": 90.0, "min_cosine": 0.9999},
        "onnx-int8": {"chunks_per_s": 160.0, "min_cosine": 0.97},
    }
    assert select_default(measured) == "onnx"  # int8 is faster but drifts too far from torch
    measured["onnx-int8"]["min_cosine"] = 0.995
    assert select_default(measured) == "onnx-int8"
    assert select_default(measured, min_cosine=0.9999999) == "torch"
    assert select_default({"torch": {"chunks_per_s": 1.0, "min_cosine": 0.5}}) == "torch"


@pytest.mark.slow
def test_benchmark_embed_json_contract(home: Path) -> None:
    environment = inherited_environment()
    environment["RAG_PLATFORM_HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, "-m", "rag_platform.cli", "benchmark", "embed", "--chunks", "24", "--json"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=home,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["chunks"] == 24 and report["default"] == load_settings(home).embedding.backend
    assert set(report["backends"]) == set(RUNTIMES)
    for name, measured in report["backends"].items():
        assert measured["chunks_per_s"] > 0, name
        assert 0.99 <= measured["min_cosine"] <= measured["cosine_vs_torch"] <= 1.0 + 1e-6, name
    assert report["backends"]["torch"]["cosine_vs_torch"] == pytest.approx(1.0, abs=1e-6)
    assert report["recommended"] in RUNTIMES


@pytest.mark.parametrize("backend", RUNTIMES)
def test_a_vector_does_not_depend_on_its_batch(backend: str, home: Path, texts: list[str]) -> None:
    """Incremental equals full only if a chunk's vector is the same whichever chunks it is embedded with."""
    embedder = make_embedder(EmbeddingSettings(MODEL, backend, batch_size=8), home / "cache")
    together = embedder.embed(texts[:16])
    alone = np.vstack([embedder.embed([text]) for text in texts[5:9]])
    assert np.abs(together[5:9] - alone).max() <= 1e-6, backend
