"""``rag-platform benchmark embed``: every embedding backend on the same chunks, side by side in one run.

The reference is ``SentenceTransformer(model, backend="torch")`` with library defaults. Each backend embeds
the same N chunks (cut from the bundled sample corpus, topped up with the seeded synthetic corpus) after a
warm-up that loads (and, for ONNX, exports) the model outside the timed pass.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rag_platform.chunking import Chunker, ChunkerConfig
from rag_platform.config import Settings
from rag_platform.embedding import RUNTIMES, make_embedder, resolve_model_path
from rag_platform.parsing import parse_document
from rag_platform.records import ParsedDocument
from rag_platform.synthetic import generate_corpus

MIN_COSINE = 0.99


def sample_texts(settings: Settings, n: int) -> list[str]:
    """N chunk texts as the configured chunker cuts them: the sample corpus first, then synthetic documents."""
    import rag_platform

    chunker = Chunker(ChunkerConfig.from_settings(settings))
    texts: list[str] = []
    folders = [Path(rag_platform.__file__).parent / "sample_corpus"]
    with tempfile.TemporaryDirectory(prefix="rag-embed-bench-") as tmp:
        synthetic = Path(tmp)
        generate_corpus(synthetic, max(1, n // 4))
        folders.append(synthetic)
        for folder in folders:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                title, text, mime = parse_document(path.read_bytes(), path.name)
                parsed = ParsedDocument(uri=path.as_uri(), document_version="", title=title, text=text, mime=mime)
                texts.extend(chunk.text for chunk in chunker.chunk(parsed))
                if len(texts) >= n:
                    return texts[:n]
    return texts


def select_default(backends: Mapping[str, Mapping[str, float]], min_cosine: float = MIN_COSINE) -> str:
    """The fastest backend whose every vector stays within ``min_cosine`` of the torch reference."""
    eligible = {name: m for name, m in backends.items() if m["min_cosine"] >= min_cosine}
    if not eligible:
        return "torch"
    return max(sorted(eligible), key=lambda name: eligible[name]["chunks_per_s"])


def available_runtimes() -> list[str]:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return ["torch"]
    return list(RUNTIMES)


def benchmark_backends(settings: Settings, n: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    texts = sample_texts(settings, n)
    log(f"embedding {len(texts)} chunks with each backend")
    reference_model = SentenceTransformer(resolve_model_path(settings.embedding.model), backend="torch")
    reference_model.encode(texts[:8])
    started = time.perf_counter()
    reference = np.asarray(reference_model.encode(texts, normalize_embeddings=True), dtype=np.float32)
    results: dict[str, dict[str, float]] = {
        "torch": {"chunks_per_s": round(len(texts) / (time.perf_counter() - started), 2)}
    }
    for name in available_runtimes():
        embedder = make_embedder(dataclasses.replace(settings.embedding, backend=name), settings.cache_dir)
        embedder.embed(texts[:8])  # load (and export, for ONNX) outside the timed pass
        started = time.perf_counter()
        vectors = embedder.embed(texts)
        seconds = time.perf_counter() - started
        cosines = np.sum(vectors * reference, axis=1)
        measured = {
            "chunks_per_s": round(len(texts) / seconds, 2),
            "cosine_vs_torch": round(float(cosines.mean()), 6),
            "min_cosine": round(float(cosines.min()), 6),
        }
        if name == "torch":
            # The library-default reference was timed above; our configured torch path is reported beside it.
            measured["configured_chunks_per_s"] = measured["chunks_per_s"]
            measured["chunks_per_s"] = results["torch"]["chunks_per_s"]
        results[name] = measured
        log(f"{name}: {measured['chunks_per_s']} chunks/s, min cosine {measured['min_cosine']}")
    torch_rate = results["torch"]["chunks_per_s"]
    for measured in results.values():
        measured["speedup_vs_torch"] = round(measured["chunks_per_s"] / torch_rate, 2)
    return {
        "chunks": len(texts),
        "default": settings.embedding.backend,
        "recommended": select_default(results),
        "model": settings.embedding.model,
        "backends": results,
    }
