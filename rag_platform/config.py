"""Platform configuration: ``$RAG_PLATFORM_HOME/config.toml`` plus ``RAG_PLATFORM__SECTION__KEY`` overrides.

One settings object serves the CLI, the Dagster resources and the query API. The file is created with
defaults on first use; environment variables win over the file; unknown keys are a clear error.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "RAG_PLATFORM__"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass(frozen=True, slots=True)
class EmbeddingSettings:
    model: str = "all-MiniLM-L6-v2"
    # The fastest backend that keeps nDCG@10 within 0.01 of torch (README "Performance"); small batches pad less.
    backend: str = "onnx-int8"
    batch_size: int = 8
    threads: int = 0
    commit_every: int = 256
    # Where ONNX exports of the model are cached; empty means <home>/cache.
    export_dir: str = ""


@dataclass(frozen=True, slots=True)
class ChunkerSettings:
    max_tokens: int = 200
    overlap: int = 32


@dataclass(frozen=True, slots=True)
class SourceSettings:
    max_bytes: int = 5_000_000


@dataclass(frozen=True, slots=True)
class IndexSettings:
    backend: str = "lancedb"
    alias: str = "rag_chunks"
    keep_versions: int = 2
    ann_min_rows: int = 50_000
    # Fusion tuned on the dbpedia collection for both the torch and the int8 vectors (benchmarks/tune_hybrid.py):
    # hybrid at least the better single mode on both, fewest candidates, most keyword weight that costs nothing;
    # see README "Retrieval quality".
    rrf_k: int = 10
    keyword_weight: float = 0.03
    candidates: int = 50
    num_candidates: int = 200
    index_options: str = "int8_hnsw"
    write_batch: int = 500
    # Elasticsearch: primary shards of each version, and replicas set on a built version before it is served.
    shards: int = 1
    replicas: int = 1


@dataclass(frozen=True, slots=True)
class RerankSettings:
    provider: str = "none"
    cross_encoder_path: str = ""
    cohere_model: str = "rerank-v3.5"
    timeout_s: float = 10.0
    candidates: int = 50


@dataclass(frozen=True, slots=True)
class AnswerSettings:
    # auto: Cohere chat when COHERE_API_KEY is set, the offline extractive generator otherwise.
    generator: str = "auto"
    cohere_model: str = "command-a-03-2025"
    timeout_s: float = 20.0
    # Abstain when no retrieved sentence is this similar to the question (cosine, embedding.model);
    # calibrated for the default model by benchmarks/answer_quality.py (README "Answers").
    min_similarity: float = 0.52
    max_sentences: int = 3
    sentence_margin: float = 0.1


@dataclass(frozen=True, slots=True)
class QueriesSettings:
    standing: tuple[str, ...] = (
        "How does incremental refresh decide what to re-embed?",
        "How do I roll back to an earlier index version?",
    )
    k: int = 5


@dataclass(frozen=True, slots=True)
class EvalSettings:
    dataset: str = ""


@dataclass(frozen=True, slots=True)
class FinetuneSettings:
    # The candidate is published only when its nDCG@10 on eval.dataset beats the served version's by this much.
    min_gain: float = 0.005
    budget_s: int = 300
    seed: int = 13
    batch_size: int = 32
    learning_rate: float = 1e-5
    epochs: int = 1
    max_pairs: int = 20_000
    # Longer inputs are cut while training (the saved model keeps its own window): CPU time grows with length.
    max_tokens: int = 64
    # 1 mines a hard negative per pair from the served vectors; 0 (the default: mined negatives cost 0.05
    # nDCG@10 on DBpedia, README "Fine-tuning") trains on in-batch negatives only.
    hard_negatives: int = 0


@dataclass(frozen=True, slots=True)
class GateSettings:
    ndcg_tolerance: float = 0.02
    max_delete_fraction: float = 0.5


@dataclass(frozen=True, slots=True)
class SensorSettings:
    interval_s: int = 30
    # `ui` and `demo` watch the source folders and refresh in their own warm process (defs/watcher.py); false
    # leaves every change to the sensor.
    watch: bool = True
    # The served index is stale (Dagster freshness policy fails) this long after its last refresh.
    max_staleness_s: int = 86_400


@dataclass(frozen=True, slots=True)
class ApiSettings:
    max_k: int = 100
    max_query_chars: int = 2000


@dataclass(frozen=True, slots=True)
class Settings:
    """All platform settings; ``home`` is where every piece of state lives."""

    home: Path
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    chunker: ChunkerSettings = field(default_factory=ChunkerSettings)
    source: SourceSettings = field(default_factory=SourceSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    rerank: RerankSettings = field(default_factory=RerankSettings)
    queries: QueriesSettings = field(default_factory=QueriesSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    gates: GateSettings = field(default_factory=GateSettings)
    sensor: SensorSettings = field(default_factory=SensorSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    answer: AnswerSettings = field(default_factory=AnswerSettings)

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def snapshot_path(self) -> Path:
        return self.home / "snapshot.duckdb"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def lock_path(self) -> Path:
        return self.home / "refresh.lock"

    def as_dict(self) -> dict[str, Any]:
        data = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        return {"home": str(self.home), **json.loads(json.dumps(data))}


SECTIONS: dict[str, type] = {
    f.name: f.type if isinstance(f.type, type) else globals()[str(f.type)]
    for f in dataclasses.fields(Settings)
    if f.name != "home"
}


def platform_home() -> Path:
    """The platform home: ``$RAG_PLATFORM_HOME`` or ``./.rag_platform``, as an absolute path."""
    return Path(os.environ.get("RAG_PLATFORM_HOME", ".rag_platform")).expanduser().resolve()


def _coerce(section: str, key: str, raw: Any, default: Any) -> Any:
    """``raw`` (from TOML, or a string from the environment) as the type of ``default``; strict: a TOML
    ``true`` is not a number, a number is not a string, and NaN or infinity is no setting."""
    where = f"{section}.{key}"
    try:
        if isinstance(default, bool):
            if isinstance(raw, str):
                if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                    raise ValueError(raw)
                return raw.lower() in {"1", "true", "yes"}
            if not isinstance(raw, bool):
                raise ValueError(raw)
            return raw
        if isinstance(default, tuple):
            if isinstance(raw, str):
                raw = json.loads(raw) if raw.strip().startswith("[") else [raw] if raw else []
            if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
                raise ValueError(raw)
            return tuple(raw)
        if not isinstance(default, str) and (isinstance(raw, bool) or not isinstance(raw, str | int | float)):
            raise ValueError(raw)
        if isinstance(default, int):
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            return int(raw)
        if isinstance(default, float):
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(raw)
            return value
        if not isinstance(raw, str):
            raise ValueError(raw)
        return raw
    except (ValueError, TypeError, OverflowError, json.JSONDecodeError):
        kind = type(default).__name__ if not isinstance(default, tuple) else "list of strings"
        raise ConfigError(f"config {where}: expected {kind}, got {_shown(raw)}") from None


def _shown(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _default_toml() -> str:
    lines = ["# rag-platform configuration; RAG_PLATFORM__SECTION__KEY environment variables override it."]
    for section, cls in SECTIONS.items():
        lines.append(f"\n[{section}]")
        for f in dataclasses.fields(cls):
            value = getattr(cls(), f.name)
            lines.append(f"{f.name} = {json.dumps(list(value) if isinstance(value, tuple) else value)}")
    return "\n".join(lines) + "\n"


_ALIAS = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")  # a name both LanceDB and Elasticsearch accept


def _validate(settings: Settings) -> None:
    """Every key's range: one line naming the key and what it must be, before anything runs with it. Checks
    against the domain's own definitions (runtimes, index types, providers, the model's window) are
    ``settings_checks.check_settings``: this base module imports no domain module."""
    e, c, i, r, g, a = (
        settings.embedding,
        settings.chunker,
        settings.index,
        settings.rerank,
        settings.gates,
        settings.api,
    )
    checks = [
        (bool(e.model.strip()), "embedding.model must not be empty"),
        (e.batch_size >= 1, "embedding.batch_size must be at least 1"),
        (e.threads >= 0, "embedding.threads must be 0 (automatic) or more"),
        (e.commit_every >= 1, "embedding.commit_every must be at least 1"),
        (c.max_tokens >= 16, "chunker.max_tokens must be at least 16"),
        (0 <= c.overlap < c.max_tokens, "chunker.overlap must be in [0, chunker.max_tokens)"),
        (settings.source.max_bytes >= 1, "source.max_bytes must be at least 1"),
        (i.backend in {"lancedb", "elasticsearch"}, "index.backend must be lancedb or elasticsearch"),
        (bool(_ALIAS.fullmatch(i.alias)), "index.alias must be 1-100 of a-z, 0-9, _, . and -, starting alphanumeric"),
        (i.keep_versions >= 1, "index.keep_versions must be at least 1"),
        (i.ann_min_rows >= 0, "index.ann_min_rows must be 0 or more"),
        (i.rrf_k >= 1, "index.rrf_k must be at least 1"),
        (0.0 <= i.keyword_weight <= 1.0, "index.keyword_weight must be in [0, 1]"),
        (i.candidates >= 1, "index.candidates must be at least 1"),
        (1 <= i.num_candidates <= 10_000, "index.num_candidates must be in [1, 10000]"),
        (i.shards >= 1, "index.shards must be at least 1"),
        (i.replicas >= 0, "index.replicas must be at least 0"),
        (i.write_batch >= 1, "index.write_batch must be at least 1"),
        (r.timeout_s > 0, "rerank.timeout_s must be positive"),
        (r.candidates >= 1, "rerank.candidates must be at least 1"),
        (settings.queries.k >= 1, "queries.k must be at least 1"),
        (-1.0 <= settings.finetune.min_gain <= 1.0, "finetune.min_gain must be in [-1, 1]"),
        (settings.finetune.budget_s >= 1, "finetune.budget_s must be at least 1"),
        (settings.finetune.batch_size >= 2, "finetune.batch_size must be at least 2 (in-batch negatives)"),
        (settings.finetune.learning_rate > 0, "finetune.learning_rate must be positive"),
        (settings.finetune.epochs >= 1, "finetune.epochs must be at least 1"),
        (settings.finetune.max_pairs >= 1, "finetune.max_pairs must be at least 1"),
        (settings.finetune.max_tokens >= 8, "finetune.max_tokens must be at least 8"),
        (settings.finetune.hard_negatives in (0, 1), "finetune.hard_negatives must be 0 or 1"),
        (0.0 <= g.ndcg_tolerance <= 1.0, "gates.ndcg_tolerance must be in [0, 1]"),
        (0.0 <= g.max_delete_fraction <= 1.0, "gates.max_delete_fraction must be in [0, 1]"),
        (settings.sensor.interval_s >= 1, "sensor.interval_s must be at least 1"),
        (settings.sensor.max_staleness_s >= 60, "sensor.max_staleness_s must be at least 60"),
        (a.max_k >= 1, "api.max_k must be at least 1"),
        (a.max_query_chars >= 1, "api.max_query_chars must be at least 1"),
        (
            settings.answer.generator in {"auto", "extractive", "cohere"},
            "answer.generator must be auto, extractive or cohere",
        ),
        (settings.answer.max_sentences >= 1, "answer.max_sentences must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"config: {message}")


def _read_toml(path: Path) -> dict[str, Any]:
    """The parsed config file; a folder in its place, binary content or bad TOML is one ConfigError line."""
    try:
        text = path.read_bytes().decode("utf-8")
        return tomllib.loads(text)
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder, not a file") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text (binary content?)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {str(exc).splitlines()[0]}") from None


PUBLISHED_MODEL = Path("models") / "published.json"


def published_model(home: Path) -> dict[str, str] | None:
    """The fine-tuned model ``finetune`` published for this home (``base``, ``path``, ``version``), if any."""
    path = home / PUBLISHED_MODEL
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("base", "path", "version")):
        return None
    return {k: record[k] for k in ("base", "path", "version")}


def write_published_model(home: Path, base: str, path: str, version: str) -> None:
    """Serve the fine-tuned model at ``path`` wherever ``embedding.model`` is ``base`` (written atomically)."""
    target = home / PUBLISHED_MODEL
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"base": base, "path": path, "version": version}), encoding="utf-8")
    os.replace(tmp, target)


def clear_published_model(home: Path) -> None:
    (home / PUBLISHED_MODEL).unlink(missing_ok=True)


def with_published_model(settings: Settings) -> Settings:
    """``embedding.model`` as served: the published fine-tuned model while the configured model is still the
    one it was trained from (a different configured model wins, and builds its own index version)."""
    record = published_model(settings.home)
    if record is None or record["base"] != settings.embedding.model or not Path(record["path"]).is_dir():
        return settings
    return dataclasses.replace(settings, embedding=dataclasses.replace(settings.embedding, model=record["path"]))


def load_settings(home: Path | None = None, *, create: bool = True, published: bool = True) -> Settings:
    """Read ``config.toml`` under the home (writing defaults when absent) and apply env overrides; with
    ``published``, a fine-tuned model that ``finetune`` published replaces the model it was trained from."""
    home = (home or platform_home()).resolve()
    path = home / "config.toml"
    if create and not path.exists() and not path.is_symlink():
        try:
            home.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".toml.tmp")
            tmp.write_text(_default_toml(), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise ConfigError(f"cannot create {path}: {exc.strerror or exc}") from None
    data: dict[str, dict[str, Any]] = {}
    if path.exists():
        data = _read_toml(path)
    for name, value in os.environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2:
            raise ConfigError(f"environment variable {name}: expected RAG_PLATFORM__SECTION__KEY")
        data.setdefault(parts[0], {})[parts[1]] = value
    sections: dict[str, Any] = {}
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"config: unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"config: [{section}] must be a table of keys, got {_shown(values)}")
        cls = SECTIONS[section]
        defaults = cls()
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, raw in values.items():
            if key not in known:
                raise ConfigError(f"config: unknown key {section}.{key}")
            kwargs[key] = _coerce(section, key, raw, getattr(defaults, key))
        sections[section] = cls(**kwargs)
    settings = Settings(home=home, **sections)
    _validate(settings)
    return with_published_model(settings) if published else settings
