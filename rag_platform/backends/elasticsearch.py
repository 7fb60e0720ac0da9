"""The production backend: one Elasticsearch index per index version, an alias for the served one.

Built on the official 9.x client, which talks to 9.x servers only (it sends ``compatible-with=9`` headers).
Vectors are ``dense_vector`` with cosine similarity and explicit ``index_options``; text and title are analysed
for BM25. Hybrid search uses the server's RRF retriever when the license allows it (and, for unequal weights,
when the server supports weighted RRF), otherwise the same client-side fusion as the embedded backend. Server
facts (version, license) need the ``monitor`` cluster privilege; without it the backend fuses client-side.

Publishing is atomic, in-place refreshes included. A version served by an alias is never written in place: a
handle's first write to it (``upsert``, ``delete``) clones the served physical index into a staging generation
``<version>-g<N>``, and from then on this handle reads and writes that. ``swap_alias`` then moves, in one
``_aliases`` request, the served alias and the version's own alias (``<version>`` names the generation readers
see) to the staging index and deletes the superseded generation. Until then every other reader of the alias or
of the version name sees the published state; a run killed before the swap leaves a staging index that the next
writer of the version continues (it holds the writes the ledger recorded). A version no alias serves (a new
build) is written directly. Versions created before generations existed are a physical index named like the
version; their first in-place refresh turns them into an alias over a generation, in the same atomic request.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from rag_platform.backends.base import (
    TIE_MARGIN,
    BackendError,
    BackendUnavailable,
    BulkWriteError,
    Filters,
    IndexMissing,
    IndexVersion,
    validate_filters,
)
from rag_platform.fusion import reciprocal_rank_fusion, sort_hits
from rag_platform.records import METADATA_FIELDS, ChunkMetadata, Hit, IndexedChunk, sha256_hex

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from rag_platform.config import Settings


INDEX_OPTIONS = ("int8_hnsw", "hnsw", "bbq_hnsw", "flat", "int8_flat", "bbq_flat")
# Quantized index types score kNN on the quantized vectors; rescore_vector re-scores the top hits exactly.
QUANTIZED_OPTIONS = frozenset({"int8_hnsw", "int8_flat", "bbq_hnsw", "bbq_flat"})
RESCORE_OVERSAMPLE = 2.0
# DenseVectorFieldMapper.BBQ_MIN_DIMS: bbq index types refuse fewer dimensions.
BBQ_MIN_DIMS = 64
# The RRF retriever is licensed at ENTERPRISE (RRFRankPlugin.RANK_RRF_FEATURE); a trial grants every feature.
RRF_LICENSES = frozenset({"enterprise", "trial"})
# How long version and license answers are trusted: a license can be changed or expire while we run.
LICENSE_TTL_S = 300.0
# kNN num_candidates may not exceed 10,000 (KnnSearchBuilder.NUM_CANDS_LIMIT); from + size of a search may not
# exceed index.max_result_window (default 10,000).
MAX_NUM_CANDIDATES = 10_000
MAX_RESULT_WINDOW = 10_000
RETRY_STATUSES = (429, 502, 503, 504)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,200}$")
# A generation of a version: the physical index the version's alias points at, or a staging copy of it.
# Elasticsearch reference for the rules this relies on: "Clone index API"
# (https://www.elastic.co/docs/api/elasticsearch/operation/operation-indices-clone), "Index blocks"
# (https://www.elastic.co/guide/en/elasticsearch/reference/current/index-modules-blocks.html) and "Update aliases
# and delete indices atomically" (https://www.elastic.co/docs/api/elasticsearch/operation/operation-indices-update-aliases).
_GENERATION = re.compile(r"^(?P<version>.+)-g(?P<number>[0-9]+)$")
_SOURCE_FIELDS = ["chunk_id", "document_id", "source", "title", "text", "heading_path", "document_version", "run_id"]
_KEYWORD_FIELDS = ("chunk_id", "document_id", "source", "document_version", "run_id", "chunker", "model")
# Filters address keyword fields; title is analysed text, so its exact form lives in a keyword sub-field.
_FILTER_TARGET = {"title": "title.raw"}
log = logging.getLogger(__name__)
# (server, what) pairs already warned about: a degraded mode is reported once per process, not per backend.
_WARNED: set[tuple[str, str]] = set()
_WARNED_LOCK = threading.Lock()


class Forbidden(BackendError):
    """The server refused the request for lack of a privilege or a license (403)."""


@dataclass(frozen=True, slots=True)
class ServerFeatures:
    """What the server told us; ``version`` is None when ``GET /`` was refused."""

    version: tuple[int, int] | None
    rrf_licensed: bool
    expires_at: float


@dataclass(frozen=True, slots=True)
class Generations:
    """The physical indexes of one version: ``current`` is what the version's name resolves to for readers (the
    original index named like the version, generation 0, or the generation its alias points at), ``aliases`` the
    aliases on it; ``newer`` are staging indexes cloned from it (a killed run's), ``older`` leftovers, both
    without aliases and by ascending generation."""

    current: str | None
    number: int
    aliases: frozenset[str]
    newer: tuple[str, ...]
    older: tuple[str, ...]

    @property
    def latest(self) -> str | None:
        """The version's latest state: its newest staging index, else the current generation."""
        return self.newer[-1] if self.newer else self.current

    @property
    def all(self) -> list[str]:
        return [name for name in (self.current, *self.newer, *self.older) if name]


@dataclass(frozen=True, slots=True)
class ElasticsearchConfig:
    """Connection settings, read from ``RAG_ES_*`` environment variables."""

    url: str
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    ca_certs: str | None = None
    timeout_s: float = 30.0
    index_prefix: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ElasticsearchConfig:
        env = os.environ if environ is None else environ
        url = env.get("RAG_ES_URL", "").strip()
        if not url:
            raise BackendError("the Elasticsearch backend needs RAG_ES_URL (e.g. https://localhost:9200)")
        if bool(env.get("RAG_ES_USERNAME")) != bool(env.get("RAG_ES_PASSWORD")):
            raise BackendError("set both RAG_ES_USERNAME and RAG_ES_PASSWORD, or neither")
        try:
            timeout = float(env.get("RAG_ES_TIMEOUT_S") or 30.0)
        except ValueError:
            raise BackendError(
                f"RAG_ES_TIMEOUT_S must be a number of seconds, got {env['RAG_ES_TIMEOUT_S']!r}"
            ) from None
        prefix = env.get("RAG_ES_INDEX_PREFIX", "")
        if prefix and not _NAME.match(prefix):
            raise BackendError(f"RAG_ES_INDEX_PREFIX {prefix!r} is not a valid lowercase index name prefix")
        return cls(
            url=url,
            api_key=env.get("RAG_ES_API_KEY") or None,
            username=env.get("RAG_ES_USERNAME") or None,
            password=env.get("RAG_ES_PASSWORD") or None,
            ca_certs=env.get("RAG_ES_CA_CERTS") or None,
            timeout_s=timeout,
            index_prefix=prefix,
        )

    @property
    def safe_url(self) -> str:
        """The URL without any user information, for messages and logs."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def client(self, max_retries: int = 3) -> Elasticsearch:
        from elasticsearch import Elasticsearch

        options: dict[str, Any] = {}
        if self.ca_certs:
            options["ca_certs"] = self.ca_certs
        if self.api_key:
            options["api_key"] = self.api_key
        elif self.username:
            options["basic_auth"] = (self.username, self.password or "")
        return Elasticsearch(
            self.url,
            request_timeout=self.timeout_s,
            max_retries=max_retries,
            retry_on_status=RETRY_STATUSES,
            retry_on_timeout=True,
            **options,
        )


def mapping(dim: int, index_options: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The index mapping: vectors for kNN, analysed text for BM25, keyword fields for filters and lineage."""
    if index_options not in INDEX_OPTIONS:
        raise BackendError(f"unknown index.index_options {index_options!r}; choose one of {', '.join(INDEX_OPTIONS)}")
    if index_options.startswith("bbq_") and dim < BBQ_MIN_DIMS:
        raise BackendError(
            f"index.index_options {index_options!r} needs vectors of at least {BBQ_MIN_DIMS} dimensions; "
            f"the model has {dim}: choose int8_hnsw or hnsw"
        )
    properties: dict[str, Any] = {field: {"type": "keyword"} for field in _KEYWORD_FIELDS}
    properties.update(
        {
            "index_version": {"type": "keyword"},
            "text_sha256": {"type": "keyword", "index": False, "doc_values": False},
            "heading_path": {"type": "text"},
            "title": {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 1024}}},
            "text": {"type": "text"},
            "vector": {
                "type": "dense_vector",
                "dims": dim,
                "index": True,
                "similarity": "cosine",
                "index_options": {"type": index_options},
            },
        }
    )
    return {"dynamic": "strict", "_meta": dict(meta), "properties": properties}


def filter_clauses(filters: Filters | None) -> list[dict[str, Any]]:
    """``terms`` clauses for exact-match filters; a list means any of. Unknown fields are an error."""
    return [{"terms": {_FILTER_TARGET.get(name, name): values}} for name, values in validate_filters(filters).items()]


def cosine_from_score(score: float) -> float:
    """Elasticsearch scores cosine kNN as (1 + cos) / 2; the interface promises the cosine itself."""
    return 2.0 * score - 1.0


class ElasticsearchBackend:
    """Search index on Elasticsearch 9.x."""

    kind = "elasticsearch"

    def __init__(
        self,
        client: Elasticsearch,
        *,
        url_for_messages: str = "Elasticsearch",
        index_prefix: str = "",
        index_options: str = "int8_hnsw",
        num_candidates: int = 200,
        bulk_chunk_size: int = 500,
        bulk_max_retries: int = 5,
        initial_backoff_s: float = 1.0,
        shards: int = 1,
        replicas: int = 1,
        license_ttl_s: float = LICENSE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not 1 <= num_candidates <= MAX_NUM_CANDIDATES:
            raise BackendError(f"index.num_candidates must be in [1, {MAX_NUM_CANDIDATES}], got {num_candidates}")
        if shards < 1 or replicas < 0:
            raise BackendError(f"index.shards must be >= 1 and index.replicas >= 0, got {shards} and {replicas}")
        self.client = client
        self.where = url_for_messages
        self.prefix = index_prefix
        self.index_options = index_options
        self.num_candidates = num_candidates
        self.bulk_chunk_size = bulk_chunk_size
        self.bulk_max_retries = bulk_max_retries
        self.initial_backoff_s = initial_backoff_s
        self.shards = shards
        self.replicas = replicas
        self.license_ttl_s = license_ttl_s
        self._clock = clock
        self._server: ServerFeatures | None = None
        self._meta: dict[str, dict[str, Any]] = {}
        # Versions this backend refreshed since its last write to them: reads need no refresh first.
        self._visible: set[str] = set()
        # Versions this handle writes -> the physical index it reads and writes for them; None: opened while an
        # alias serves it, cloned into a staging index on the first write (reads see the served state till then).
        self._writes: dict[str, str | None] = {}
        self._write_lock = threading.RLock()
        # Whether _source.exclude_vectors may be sent when the version is unknown (None: not tried yet).
        self._exclude_vectors: bool | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> ElasticsearchBackend:
        config = ElasticsearchConfig.from_env(environ)
        return cls(
            config.client(),
            url_for_messages=f"Elasticsearch at {config.safe_url}",
            index_prefix=config.index_prefix,
            index_options=settings.index.index_options,
            num_candidates=settings.index.num_candidates,
            bulk_chunk_size=settings.index.write_batch,
            shards=settings.index.shards,
            replicas=settings.index.replicas,
        )

    # ---- plumbing ------------------------------------------------------------------------------------

    def _physical(self, name: str) -> str:
        physical = f"{self.prefix}{name}"
        if not _NAME.match(physical):
            raise BackendError(f"invalid Elasticsearch index name {physical!r} (lowercase letters, digits, _ . -)")
        return physical

    def _logical(self, physical: str) -> str:
        return physical[len(self.prefix) :] if physical.startswith(self.prefix) else physical

    def _index(self, name: str) -> str:
        """The index expression this handle reads ``name`` through: its staging index while it writes a served
        version, else the name itself (an index, or the alias over the version's current generation)."""
        return self._writes.get(name) or self._physical(name)

    def _version_of(self, physical: str, aliases: set[str] | None = None) -> str | None:
        """The version a physical index belongs to; None for a staging index (a generation its version's alias
        does not point at yet). Without ``aliases``, a generation is assumed to be the version's current one."""
        match = _GENERATION.match(physical)
        if match is None:
            return self._logical(physical)
        if aliases is not None and match["version"] not in aliases:
            return None
        return self._logical(match["version"])

    def _generations(self, name: str) -> Generations:
        """The version's physical indexes, from one aliases request over ``<version>*``."""
        physical = self._physical(name)
        with self._errors(name):
            body = self.client.indices.get_alias(index=f"{physical}*", allow_no_indices=True)
        found: dict[str, tuple[int, frozenset[str]]] = {}
        for index, entry in body.items():
            match = _GENERATION.match(index)
            if index == physical:
                number = 0
            elif match is not None and match["version"] == physical:
                number = int(match["number"])
            else:
                continue  # another version whose name starts with this one's
            found[index] = (number, frozenset(entry.get("aliases") or {}))
        current = physical if physical in found else next((i for i, (_, a) in found.items() if physical in a), None)
        number, aliases = found[current] if current else (0, frozenset())
        # Staging copies carry no alias (the swap adds the version's); an index with one is never ours to delete.
        ordered = sorted((n, index) for index, (n, held) in found.items() if index != current and not held)
        return Generations(
            current,
            number,
            aliases,
            tuple(index for n, index in ordered if n > number and current is not None),
            tuple(index for n, index in ordered if n <= number or current is None),
        )

    @contextmanager
    def _errors(self, name: str | None = None) -> Iterator[None]:
        """Translate client errors into the interface's errors, with messages that never carry secrets."""
        import elasticsearch as es

        try:
            yield
        except es.AuthenticationException:
            raise BackendUnavailable(f"{self.where} rejected the credentials (401): check RAG_ES_* settings") from None
        except es.AuthorizationException as exc:
            raise Forbidden(f"{self.where} refused the request (403): {_reason(exc)}") from None
        except es.NotFoundError as exc:
            what = f"index {name!r}" if name else "the requested index"
            raise IndexMissing(f"{what} does not exist in {self.where} ({_reason(exc)})") from None
        except (es.ConnectionError, es.ConnectionTimeout) as exc:
            raise BackendUnavailable(f"{self.where} is unreachable: {type(exc).__name__}") from None
        except es.ApiError as exc:
            if exc.meta.status in RETRY_STATUSES or exc.meta.status >= 500:
                raise BackendUnavailable(f"{self.where} answered {exc.meta.status}: {_reason(exc)}") from None
            raise BackendError(f"{self.where} answered {exc.meta.status}: {_reason(exc)}") from None

    def _warn_once(self, key: str, message: str) -> None:
        with _WARNED_LOCK:
            if (self.where, key) in _WARNED:
                return
            _WARNED.add((self.where, key))
        log.warning("%s", message)

    def _server_features(self) -> ServerFeatures:
        """Server version and whether the license allows the RRF retriever, re-asked after ``license_ttl_s``.

        Both answers need the ``monitor`` cluster privilege; a key without it gets 403 and the backend carries
        on without them (client-side fusion, version-independent requests), warning once.
        """
        with self._lock:
            now = self._clock()
            if self._server is None or now >= self._server.expires_at:
                self._server = self._ask_server(now)
            return self._server

    def _ask_server(self, now: float) -> ServerFeatures:
        version: tuple[int, int] | None = None
        licensed = False
        expires_at = now + self.license_ttl_s
        try:
            with self._errors():
                number = str(self.client.info()["version"]["number"])
            major, minor = (int(part) for part in number.split(".")[:2])
            version = (major, minor)
        except Forbidden as exc:
            self._warn_once("info", f"cannot read the server version ({exc}); using version-independent requests")
        try:
            with self._errors():
                body = dict(self.client.license.get()["license"])
            # An expired or invalid license grants nothing beyond basic, whatever its type says.
            licensed = str(body.get("type")) in RRF_LICENSES and str(body.get("status")) == "active"
            expiry_ms = body.get("expiry_date_in_millis")
            if licensed and isinstance(expiry_ms, int | float):
                left_s = expiry_ms / 1000.0 - time.time()
                licensed = left_s > 0
                expires_at = min(expires_at, now + max(left_s, 0.0))
        except Forbidden as exc:
            self._warn_once("license", f"cannot read the license ({exc}); hybrid search fuses client-side")
        return ServerFeatures(version, licensed, expires_at)

    def _version_at_least(self, version: tuple[int, int]) -> bool | None:
        """Whether the server is at least ``version``; None when the server did not say."""
        known = self._server_features().version
        return None if known is None else known >= version

    def _index_meta(self, name: str) -> dict[str, Any]:
        if name not in self._meta:
            with self._errors(name):
                body = self.client.indices.get_mapping(index=self._index(name))
            # Keyed by the concrete index, which differs from the name when the name is an alias.
            [entry] = body.values()
            self._meta[name] = dict(entry["mappings"].get("_meta", {}))
        return self._meta[name]

    # ---- writes --------------------------------------------------------------------------------------

    def create_version(self, name: str, dim: int, meta: Mapping[str, Any]) -> None:
        physical = self._physical(name)
        if _GENERATION.match(name):
            raise BackendError(f"index version names may not end in -g<digits> (kept for generations): {name!r}")
        full_meta = {**dict(meta), "dim": dim, "index_options": self.index_options}
        with self._errors(name):
            if self.client.indices.exists(index=physical):
                return
            self.client.indices.create(
                index=physical,
                settings={
                    # One shard keeps BM25 statistics consistent; more only for very large corpora.
                    "number_of_shards": self.shards,
                    # No replicas and no refresh while the version is built; refresh() sets both for serving.
                    "number_of_replicas": 0,
                    "refresh_interval": "-1",
                },
                mappings=mapping(dim, self.index_options, full_meta),
            )
        self._meta[name] = full_meta
        with self._write_lock:
            self._writes[name] = physical  # a new build: no alias serves it, written directly

    def _bulk(self, name: str, actions: list[dict[str, Any]], ok_statuses: frozenset[int]) -> None:
        """Send actions with the client's bulk helper: 429s retried with backoff, every other failure reported."""
        from elasticsearch import helpers

        failures: list[tuple[str, str]] = []
        with self._errors(name):
            for ok, item in helpers.streaming_bulk(
                self.client,
                actions,
                chunk_size=self.bulk_chunk_size,
                max_retries=self.bulk_max_retries,
                initial_backoff=self.initial_backoff_s,
                retry_on_status=RETRY_STATUSES,
                raise_on_error=False,
                raise_on_exception=True,
            ):
                result = next(iter(item.values()))
                if not ok and result.get("status") not in ok_statuses:
                    failures.append((str(result.get("_id")), _item_reason(result)))
        if failures:
            raise BulkWriteError(failures)

    def _write_items(
        self, name: str, op: str, items: Mapping[str, dict[str, Any]], ok_statuses: frozenset[int] = frozenset()
    ) -> int:
        """One bulk ``op`` per chunk id (``items``: id -> the keys of its action besides its target), sent to
        the index this handle writes ``name`` to; returns how many."""
        physical = self._stage(name)  # a missing index is an error, not a silent no-op
        actions = [{"_op_type": op, "_index": physical, "_id": cid, **body} for cid, body in items.items()]
        self._visible.discard(name)
        self._bulk(name, actions, ok_statuses)
        return len(items)

    def upsert(self, name: str, chunks: Sequence[IndexedChunk]) -> int:
        if not chunks:
            return 0
        meta = self._index_meta(name)
        derived = {
            "chunker": str(meta.get("chunker_fingerprint", "")),
            "model": str(meta.get("model", "")),
            "index_version": name,
        }
        rows = {c.chunk_id: c for c in chunks}  # the last write of an id wins
        sources = {
            cid: {
                "_source": {
                    **{field: getattr(c, field) for field in _SOURCE_FIELDS},
                    "text_sha256": sha256_hex(c.text),
                    **derived,
                    "vector": [float(x) for x in c.vector],
                }
            }
            for cid, c in rows.items()
        }
        return self._write_items(name, "index", sources)

    def update_metadata(self, name: str, updates: Sequence[ChunkMetadata]) -> int:
        if not updates:
            return 0
        # Partial-document updates: the vector is neither sent nor re-parsed (9.2+ rehydrates an excluded one
        # from the index); an id the index does not hold answers 404 document_missing_exception.
        docs = {u.chunk_id: {"doc": {field: getattr(u, field) for field in METADATA_FIELDS}} for u in updates}
        return self._write_items(name, "update", docs)

    def delete(self, name: str, chunk_ids: Sequence[str]) -> int:
        ids = sorted(set(chunk_ids))
        if not ids:
            return 0
        # Deleting an unknown id is a no-op.
        return self._write_items(name, "delete", {cid: {} for cid in ids}, ok_statuses=frozenset({404}))

    def open_for_writes(self, name: str) -> None:
        """Read (and from the first write on, write) the version's latest state: a staging index a killed run
        left is continued, it holds what the ledger recorded; other leftovers are deleted by their names. A
        version no alias serves is written directly; a served one is cloned on the first write (``_stage``)."""
        with self._write_lock:
            if name in self._writes:
                return
            generations = self._generations(name)
            if generations.current is None:
                raise IndexMissing(f"index {name!r} does not exist in {self.where}")
            stale = [*generations.older, *generations.newer[:-1]]
            if stale:
                with self._errors(name):
                    self.client.indices.delete(index=",".join(stale), ignore_unavailable=True)
            served = generations.aliases - {self._physical(name)}
            self._writes[name] = generations.newer[-1] if generations.newer else None if served else generations.current
            if self._writes[name] == generations.current:
                # Written directly: lift a block a run killed between blocking and cloning may have left on it.
                with self._errors(name):
                    self.client.indices.put_settings(
                        index=generations.current, settings={"index": {"blocks": {"write": None}}}
                    )
            self._visible.discard(name)

    def _stage(self, name: str) -> str:
        """The physical index this handle writes ``name`` to, cloning the served generation on the first write."""
        with self._write_lock:
            self.open_for_writes(name)
            target = self._writes[name]
            if target is None:
                target = self._clone(name)
                self._writes[name] = target
                self._visible.discard(name)
            return target

    def _clone(self, name: str) -> str:
        """Clone the version's current generation into the next one. The clone API needs a write-blocked source
        ("Clone index API", prerequisites: ``index.blocks.write``) and copies its settings, the block included,
        except the replica count ("Clone index API": number_of_replicas is not copied), so the request sets the
        replicas and clears the block on the clone; the source's block is lifted afterwards ("Index blocks": blocks
        are dynamic settings). Segments are hard-linked, so a clone costs little."""
        generations = self._generations(name)
        source = generations.current
        if source is None:
            raise IndexMissing(f"index {name!r} does not exist in {self.where}")
        number = max([generations.number, *(self._generation_number(i) for i in generations.all)]) + 1
        target = f"{self._physical(name)}-g{number}"
        with self._errors(name):
            self.client.indices.put_settings(index=source, settings={"index": {"blocks": {"write": True}}})
            try:
                self.client.indices.clone(
                    index=source,
                    target=target,
                    settings={"index": {"number_of_replicas": self.replicas, "blocks": {"write": None}}},
                )
            finally:
                self.client.indices.put_settings(index=source, settings={"index": {"blocks": {"write": None}}})
        return target

    @staticmethod
    def _generation_number(physical: str) -> int:
        match = _GENERATION.match(physical)
        return int(match["number"]) if match else 0

    def refresh(self, name: str) -> None:
        """Settings for serving (refresh interval back to its default, ``index.replicas`` replicas), then make
        every acknowledged write searchable. Runs after the build and before the alias may move."""
        physical = self._index(name)
        settings = {"refresh_interval": None, "number_of_replicas": self.replicas}
        with self._errors(name):
            self.client.indices.put_settings(index=physical, settings={"index": settings})
            self.client.indices.refresh(index=physical)
        self._visible.add(name)

    # ---- reads ---------------------------------------------------------------------------------------

    def _make_visible(self, name: str) -> None:
        """Count, scan and ``ids`` searches see only refreshed documents; a version resumed after a crash still
        has refresh disabled, so refresh it before reading it (once, until this backend writes to it again)."""
        if name in self._visible:
            return
        try:
            with self._errors(name):
                self.client.indices.refresh(index=self._index(name))
        except Forbidden as exc:
            self._warn_once("refresh", f"cannot refresh before reading ({exc}); counts may miss recent writes")
            return
        self._visible.add(name)

    def count(self, name: str) -> int:
        self._make_visible(name)
        with self._errors(name):
            return int(self.client.count(index=self._index(name))["count"])

    def chunk_hashes(self, name: str) -> dict[str, str]:
        from elasticsearch import helpers

        self._make_visible(name)
        with self._errors(name):
            return {
                hit["_source"]["chunk_id"]: hit["_source"]["text_sha256"]
                for hit in helpers.scan(
                    self.client,
                    index=self._index(name),
                    query={"query": {"match_all": {}}, "_source": ["chunk_id", "text_sha256"]},
                    size=1000,
                )
            }

    def _source_spec(self, exclude_vectors_flag: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {"includes": [*_SOURCE_FIELDS, "vector"]}
        if exclude_vectors_flag:
            spec["exclude_vectors"] = False  # 9.2+ leaves vectors out of _source unless asked
        return spec

    def _search_ids(self, name: str, batch: list[str]) -> dict[str, Any]:
        """One ``ids`` search for a batch with vectors; the 9.2 ``exclude_vectors`` flag is sent when the version
        says so, or, when the version is unknown, tried once and dropped if the server does not know it."""
        physical = self._index(name)
        flag = self._version_at_least((9, 2))
        if flag is None:
            flag = self._exclude_vectors is not False
        try:
            with self._errors(name):
                body = self.client.search(
                    index=physical, query={"ids": {"values": batch}}, size=len(batch), source=self._source_spec(flag)
                )
        except BackendError as exc:
            # Before 9.2 the source filter has no such key: FetchSourceContext answers 400 naming it.
            if not flag or self._version_at_least((9, 2)) is not None or "exclude_vectors" not in str(exc):
                raise
            self._exclude_vectors = False
            return self._search_ids(name, batch)
        if self._version_at_least((9, 2)) is None:
            self._exclude_vectors = flag
        return dict(body)

    def get(self, name: str, chunk_ids: Sequence[str]) -> list[IndexedChunk]:
        ids = sorted(set(chunk_ids))
        if not ids:
            return []
        self._make_visible(name)
        found: list[IndexedChunk] = []
        # An ids search returns at most index.max_result_window hits.
        batch_size = min(self.bulk_chunk_size, MAX_RESULT_WINDOW)
        for start in range(0, len(ids), batch_size):
            body = self._search_ids(name, ids[start : start + batch_size])
            for hit in body["hits"]["hits"]:
                doc = hit["_source"]
                if "vector" not in doc:
                    raise BackendError(f"{self.where} returned chunk {hit['_id']} without its vector")
                found.append(
                    IndexedChunk(**{field: doc.get(field, "") for field in _SOURCE_FIELDS}, vector=list(doc["vector"]))
                )
        return sorted(found, key=lambda c: c.chunk_id)

    @staticmethod
    def _hit(doc: Mapping[str, Any], score: float) -> Hit:
        source = doc["_source"]
        return Hit(
            chunk_id=source["chunk_id"],
            document_id=source["document_id"],
            source=source["source"],
            title=source.get("title", ""),
            text=source.get("text", ""),
            document_version=source["document_version"],
            score=score,
            run_id=source.get("run_id", ""),
            heading_path=source.get("heading_path", ""),
        )

    def knn_clause(self, vector: Sequence[float], k: int, filters: Filters | None) -> dict[str, Any]:
        """A kNN clause with k <= num_candidates <= 10,000, the server's bounds (KnnSearchBuilder)."""
        k = min(k, MAX_NUM_CANDIDATES)
        clause: dict[str, Any] = {
            "field": "vector",
            "query_vector": [float(x) for x in vector],
            "k": k,
            "num_candidates": min(max(self.num_candidates, k), MAX_NUM_CANDIDATES),
        }
        if self.index_options in QUANTIZED_OPTIONS:
            # Scores of quantized vectors are approximate; re-score the top hits on the float vectors so that
            # 2 * score - 1 is the true cosine.
            clause["rescore_vector"] = {"oversample": RESCORE_OVERSAMPLE}
        if filters:
            clause["filter"] = filter_clauses(filters)
        return clause

    @staticmethod
    def bm25_query(query: str, filters: Filters | None) -> dict[str, Any]:
        return {"bool": {"must": [{"match": {"text": {"query": query}}}], "filter": filter_clauses(filters)}}

    def _ranked(
        self,
        name: str,
        k: int,
        score: Callable[[float], float] = float,
        *,
        size: int | None = None,
        **request: Any,
    ) -> list[Hit]:
        """Run one search for ``k`` hits (plus the tie margin) and return them ordered, ties by chunk id."""
        size = min(k + TIE_MARGIN if size is None else size, MAX_RESULT_WINDOW)
        with self._errors(name):
            body = self.client.search(
                index=self._index(name), size=size, source={"includes": _SOURCE_FIELDS}, **request
            )
        return sort_hits([self._hit(doc, score(float(doc["_score"]))) for doc in body["hits"]["hits"]])[:k]

    def search_dense(self, name: str, vector: Sequence[float], k: int, filters: Filters | None = None) -> list[Hit]:
        return self._ranked(name, k, cosine_from_score, knn=self.knn_clause(vector, k + TIE_MARGIN, filters))

    def search_keyword(self, name: str, query: str, k: int, filters: Filters | None = None) -> list[Hit]:
        if not query.strip():
            filter_clauses(filters)  # still reject bad filters
            return []
        return self._ranked(name, k, query=self.bm25_query(query, filters))

    def server_side_rrf(self, weights: tuple[float, float]) -> bool:
        """The RRF retriever needs an active enterprise or trial license; per-retriever weights need 9.2+."""
        features = self._server_features()
        if not features.rrf_licensed:
            return False
        return weights[0] == weights[1] or (features.version is not None and features.version >= (9, 2))

    def search_hybrid(
        self,
        name: str,
        query: str,
        vector: Sequence[float],
        k: int,
        filters: Filters | None = None,
        *,
        rrf_k: int = 60,
        candidates: int = 100,
        weights: tuple[float, float] = (1.0, 1.0),
    ) -> list[Hit]:
        depth = min(max(candidates, k), MAX_NUM_CANDIDATES)
        if query.strip() and self.server_side_rrf(weights):
            retriever = self.rrf_retriever(query, vector, depth, filters, rrf_k=rrf_k, weights=weights)
            try:
                # RRF requires size <= rank_window_size (CompoundRetrieverBuilder): the tie margin fits the window.
                return self._ranked(name, k, size=min(k + TIE_MARGIN, depth), retriever=retriever)
            except Forbidden as exc:
                # The license changed (or expired) since we asked: fuse client-side and ask again later.
                with self._lock:
                    self._server = None
                self._warn_once("rrf", f"the RRF retriever was refused ({exc}); hybrid search fuses client-side")
        dense = self.search_dense(name, vector, depth, filters)
        keyword = self.search_keyword(name, query, depth, filters)
        return reciprocal_rank_fusion([dense, keyword], k, rrf_k, weights)

    def rrf_retriever(
        self,
        query: str,
        vector: Sequence[float],
        depth: int,
        filters: Filters | None,
        *,
        rrf_k: int,
        weights: tuple[float, float],
    ) -> dict[str, Any]:
        dense: dict[str, Any] = {"knn": self.knn_clause(vector, depth, filters)}
        keyword: dict[str, Any] = {"standard": {"query": self.bm25_query(query, filters)}}
        children: list[dict[str, Any]] = [dense, keyword]
        if weights[0] != weights[1]:
            children = [{"retriever": dense, "weight": weights[0]}, {"retriever": keyword, "weight": weights[1]}]
        if rrf_k < 1:
            raise ValueError(f"rrf_k (RRF rank_constant) must be at least 1, got {rrf_k}")
        return {"rrf": {"retrievers": children, "rank_constant": rrf_k, "rank_window_size": depth}}

    # ---- versions and aliases ------------------------------------------------------------------------

    def _alias_holders(self, alias: str) -> list[str]:
        """Physical indexes the alias points at (none when the alias does not exist yet)."""
        try:
            with self._errors():
                return sorted(self.client.indices.get_alias(name=self._physical(alias)).keys())
        except IndexMissing:
            return []

    def swap_alias(self, alias: str, name: str, attempts: int = 3) -> None:
        """Serve ``name``'s latest state under the alias, in one atomic aliases request ("Aliases API": all
        actions apply together). When that state is a staging generation, the same request carries every alias of
        the superseded generation (the version's own included) over to it and deletes the superseded one with
        ``remove_index``, which runs before the other actions, so an alias may take the deleted index's name: a
        version that was one physical index becomes an alias over its generation. Aliases point at concrete
        indexes only, never at other aliases, hence the concrete names throughout.

        The holders are read first, so another process may move the alias in between. The server then either
        skips our ``remove`` (the alias left that index: TransportIndicesAliasesAction drops removes of absent
        aliases) or answers 404 (that index was dropped). So read the holders again afterwards and repeat until
        the alias is on the target alone; only a missing ``name`` is reported as a missing index."""
        physical_alias = self._physical(alias)
        version_alias = self._physical(name)
        with self._write_lock:
            for attempt in range(attempts + 1):
                generations = self._generations(name)
                target = self._writes.get(name) or generations.latest
                if target is None:
                    raise IndexMissing(f"index {name!r} does not exist in {self.where}")
                superseded = generations.current if generations.current != target else None
                others = [h for h in self._alias_holders(alias) if h not in {target, superseded}]
                if attempt and not others and superseded is None:
                    break
                if attempt == attempts:
                    raise BackendError(
                        f"alias {alias!r} kept moving while it was switched to {name!r}: another process is "
                        f"publishing at the same time (it is now on {', '.join(others or [str(superseded)])})"
                    )
                actions: list[dict[str, Any]] = [
                    {"remove": {"index": holder, "alias": physical_alias}} for holder in others
                ]
                carried = {physical_alias}
                if superseded is not None:
                    carried |= generations.aliases | {version_alias}
                actions += [{"add": {"index": target, "alias": held}} for held in sorted(carried)]
                if superseded is not None:
                    actions.append({"remove_index": {"index": superseded}})
                try:
                    with self._errors(name):
                        self.client.indices.update_aliases(actions=actions)
                except IndexMissing:
                    with self._errors(name):
                        if not self.client.indices.exists(index=target):
                            raise
                    # A holder we read was dropped meanwhile: read again.
            self._writes.pop(name, None)
            self._visible.discard(name)

    def resolve_alias(self, alias: str) -> str | None:
        holders = self._alias_holders(alias)
        return self._version_of(holders[0]) if holders else None

    def list_versions(self, alias: str) -> list[IndexVersion]:
        served = self.resolve_alias(alias)
        with self._errors():
            mappings = self.client.indices.get_mapping(index=f"{self.prefix}*", allow_no_indices=True)
            aliases = self.client.indices.get_alias(index=f"{self.prefix}*", allow_no_indices=True)
        versions = []
        for physical, body in mappings.items():
            meta = dict(body.get("mappings", {}).get("_meta", {}))
            if meta.get("alias") != alias:
                continue
            name = self._version_of(physical, set(aliases.get(physical, {}).get("aliases") or {}))
            if name is None:
                continue  # a staging generation: not a version of its own
            versions.append(IndexVersion(name=name, count=self.count(name), served=name == served, meta=meta))
        return sorted(versions, key=lambda v: v.name, reverse=True)

    def drop(self, name: str) -> None:
        """Delete every physical index of the version (generations and staging copies), by concrete names:
        ``action.destructive_requires_name`` refuses wildcards, and an alias cannot be deleted as an index."""
        with self._write_lock:
            generations = self._generations(name)
            if generations.aliases - {self._physical(name)}:
                raise BackendError(f"index {name!r} is served by an alias; switch the alias first")
            if generations.all:
                with self._errors(name):
                    self.client.indices.delete(index=",".join(generations.all), ignore_unavailable=True)
            self._meta.pop(name, None)
            self._writes.pop(name, None)
            self._visible.discard(name)

    def close(self) -> None:
        self.client.close()


def _reason(exc: Exception) -> str:
    """The server's own error reason from an ApiError, else its type."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return f"{error.get('type', 'error')}: {error.get('reason', '')}".strip()
        if isinstance(error, str):
            return error
    return type(exc).__name__


def _item_reason(result: Mapping[str, Any]) -> str:
    error = result.get("error")
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('reason', '')} (status {result.get('status')})"
    return f"status {result.get('status')}: {error or result.get('result', 'failed')}"
