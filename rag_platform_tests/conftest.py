"""Shared fixtures. Tests import the installed ``rag_platform``; this folder is put on sys.path only so that
test helpers (``shared_env``, ``backends.es_recorder``) can be imported by name."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from shared_env import EXPORT_ENV  # noqa: E402 - needs the path set above


@pytest.fixture
def platform_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated platform home (and Dagster home inside it) for one test."""
    home = tmp_path / "home"
    monkeypatch.setenv("RAG_PLATFORM_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    for name in list(os.environ):
        if (name.startswith("RAG_PLATFORM__") and name != EXPORT_ENV) or name == "RAG_ES_URL":
            monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sentence-transformers model, tiny and randomly initialised (seeded), saved locally.

    It exercises the same loading, tokenizing and embedding code as the bundled model at a fraction of the
    cost, for tests where the meaning of the vectors is not the point.
    """
    import shutil

    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    from rag_platform.embedding import resolve_model_path

    bundled = Path(resolve_model_path("all-MiniLM-L6-v2"))
    target = tmp_path_factory.mktemp("tiny-model")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    raw = target / "raw"
    BertModel(config).save_pretrained(raw)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(bundled / name, raw / name)
    transformer = models.Transformer(str(raw), max_seq_length=256)
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
    path = target / "model"
    model.save(str(path))
    return path
