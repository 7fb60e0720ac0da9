"""The production backend: one Elasticsearch index per index version, an alias for the served one.

Built on the official 9.x client, which talks to 9.x servers only (it sends ``compatible-with=9`` headers).
Vectors are ``dense_vector`` with cosine similarity and explicit ``index_options``; text and title are analysed
for BM25. Hybrid search uses the server's RRF retriever when the license allows it (and, for unequal weights,
when the server supports weighted RRF), otherwise the same client-side fusion as the embedded backend.
"""

from __future__ import annotations

import os
import re
import threading
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
from rag_platform.records import Hit, IndexedChunk, sha256_hex

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from rag_platform.config import Settings


INDEX_OPTIONS = ("int8_hnsw", "hnsw", "bbq_hnsw", "flat", "int8_flat", "bbq_flat")
RRF_LICENSES = frozenset({"platinum", "enterprise", "trial"})
RETRY_STATUSES = (429, 502, 503, 504)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,200}$")
_SOURCE_FIELDS = ["chunk_id", "document_id", "source", "title", "text", "heading_path", "document_version", "run_id"]
_KEYWORD_FIELDS = ("chunk_id", "document_id", "source", "document_version", "run_id", "chunker", "model")
# Filters address keyword fields; title is analysed text, so its exact form lives in a keyword sub-field.
_FILTER_TARGET = {"title": "title.raw"}


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
    ):
        self.client = client
        self.where = url_for_messages
        self.prefix = index_prefix
        self.index_options = index_options
        self.num_candidates = num_candidates
        self.bulk_chunk_size = bulk_chunk_size
        self.bulk_max_retries = bulk_max_retries
        self.initial_backoff_s = initial_backoff_s
        self._server: tuple[tuple[int, int], bool] | None = None
        self._meta: dict[str, dict[str, Any]] = {}
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
        )

    # ---- plumbing ------------------------------------------------------------------------------------

    def _physical(self, name: str) -> str:
        physical = f"{self.prefix}{name}"
        if not _NAME.match(physical):
            raise BackendError(f"invalid Elasticsearch index name {physical!r} (lowercase letters, digits, _ . -)")
        return physical

    def _logical(self, physical: str) -> str:
        return physical[len(self.prefix) :] if physical.startswith(self.prefix) else physical

    @contextmanager
    def _errors(self, name: str | None = None) -> Iterator[None]:
        """Translate client errors into the interface's errors, with messages that never carry secrets."""
        import elasticsearch as es

        try:
            yield
        except es.AuthenticationException:
            raise BackendUnavailable(f"{self.where} rejected the credentials (401): check RAG_ES_* settings") from None
        except es.AuthorizationException as exc:
            raise BackendError(f"{self.where} refused the request (403): {_reason(exc)}") from None
        except es.NotFoundError as exc:
            what = f"index {name!r}" if name else "the requested index"
            raise IndexMissing(f"{what} does not exist in {self.where} ({_reason(exc)})") from None
        except (es.ConnectionError, es.ConnectionTimeout) as exc:
            raise BackendUnavailable(f"{self.where} is unreachable: {type(exc).__name__}") from None
        except es.ApiError as exc:
            if exc.meta.status in RETRY_STATUSES or exc.meta.status >= 500:
                raise BackendUnavailable(f"{self.where} answered {exc.meta.status}: {_reason(exc)}") from None
            raise BackendError(f"{self.where} answered {exc.meta.status}: {_reason(exc)}") from None

    def _server_features(self) -> tuple[tuple[int, int], bool]:
        """(server major.minor, whether the license allows the RRF retriever), asked once per backend."""
        with self._lock:
            if self._server is None:
                with self._errors():
                    number = str(self.client.info()["version"]["number"])
                    license_type = str(self.client.license.get()["license"]["type"])
                major, minor = (int(part) for part in number.split(".")[:2])
                self._server = ((major, minor), license_type in RRF_LICENSES)
            return self._server

    def _index_meta(self, name: str) -> dict[str, Any]:
        if name not in self._meta:
            physical = self._physical(name)
            with self._errors(name):
                body = self.client.indices.get_mapping(index=physical)
            self._meta[name] = dict(body[physical]["mappings"].get("_meta", {}))
        return self._meta[name]

    # ---- writes --------------------------------------------------------------------------------------

    def create_version(self, name: str, dim: int, meta: Mapping[str, Any]) -> None:
        physical = self._physical(name)
        full_meta = {**dict(meta), "dim": dim, "index_options": self.index_options}
        with self._errors(name):
            if self.client.indices.exists(index=physical):
                return
            self.client.indices.create(
                index=physical,
                settings={
                    "number_of_shards": 1,
                    "number_of_replicas": 0,
                    # Off while the version is built; refresh() turns it back on.
                    "refresh_interval": "-1",
                },
                mappings=mapping(dim, self.index_options, full_meta),
            )
        self._meta[name] = full_meta

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

    def upsert(self, name: str, chunks: Sequence[IndexedChunk]) -> int:
        if not chunks:
            return 0
        physical = self._physical(name)
        meta = self._index_meta(name)
        rows = {c.chunk_id: c for c in chunks}
        actions = [
            {
                "_op_type": "index",
                "_index": physical,
                "_id": c.chunk_id,
                "_source": {
                    **{field: getattr(c, field) for field in _SOURCE_FIELDS},
                    "text_sha256": sha256_hex(c.text),
                    "chunker": str(meta.get("chunker_fingerprint", "")),
                    "model": str(meta.get("model", "")),
                    "index_version": name,
                    "vector": [float(x) for x in c.vector],
                },
            }
            for c in rows.values()
        ]
        self._bulk(name, actions, ok_statuses=frozenset())
        return len(rows)

    def delete(self, name: str, chunk_ids: Sequence[str]) -> int:
        ids = sorted(set(chunk_ids))
        if not ids:
            return 0
        physical = self._physical(name)
        self._index_meta(name)  # a missing index is an error, not a silent no-op
        actions = [{"_op_type": "delete", "_index": physical, "_id": cid} for cid in ids]
        self._bulk(name, actions, ok_statuses=frozenset({404}))  # deleting an unknown id is a no-op
        return len(ids)

    def open_for_writes(self, name: str) -> None:
        """Nothing to do: a search through an alias sees acknowledged writes after ``refresh``."""

    def refresh(self, name: str) -> None:
        """Restore the refresh interval (off during the build) and make every acknowledged write searchable."""
        physical = self._physical(name)
        with self._errors(name):
            self.client.indices.put_settings(index=physical, settings={"index": {"refresh_interval": None}})
            self.client.indices.refresh(index=physical)

    # ---- reads ---------------------------------------------------------------------------------------

    def count(self, name: str) -> int:
        with self._errors(name):
            return int(self.client.count(index=self._physical(name))["count"])

    def chunk_hashes(self, name: str) -> dict[str, str]:
        from elasticsearch import helpers

        with self._errors(name):
            return {
                hit["_source"]["chunk_id"]: hit["_source"]["text_sha256"]
                for hit in helpers.scan(
                    self.client,
                    index=self._physical(name),
                    query={"query": {"match_all": {}}, "_source": ["chunk_id", "text_sha256"]},
                    size=1000,
                )
            }

    def _source_spec(self, with_vector: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {"includes": [*_SOURCE_FIELDS, *(["vector"] if with_vector else [])]}
        if with_vector and self._server_features()[0] >= (9, 2):
            spec["exclude_vectors"] = False  # 9.2+ leaves vectors out of _source unless asked
        return spec

    def get(self, name: str, chunk_ids: Sequence[str]) -> list[IndexedChunk]:
        ids = sorted(set(chunk_ids))
        if not ids:
            return []
        physical = self._physical(name)
        found: list[IndexedChunk] = []
        source = self._source_spec(with_vector=True)
        for start in range(0, len(ids), self.bulk_chunk_size):
            batch = ids[start : start + self.bulk_chunk_size]
            with self._errors(name):
                body = self.client.search(
                    index=physical, query={"ids": {"values": batch}}, size=len(batch), source=source
                )
            for hit in body["hits"]["hits"]:
                doc = hit["_source"]
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
        clause: dict[str, Any] = {
            "field": "vector",
            "query_vector": [float(x) for x in vector],
            "k": k,
            "num_candidates": max(self.num_candidates, k),
        }
        if filters:
            clause["filter"] = filter_clauses(filters)
        return clause

    @staticmethod
    def bm25_query(query: str, filters: Filters | None) -> dict[str, Any]:
        return {"bool": {"must": [{"match": {"text": {"query": query}}}], "filter": filter_clauses(filters)}}

    def _ranked(self, name: str, k: int, score: Callable[[float], float] = float, **request: Any) -> list[Hit]:
        """Run one search for ``k`` hits (plus the tie margin) and return them ordered, ties by chunk id."""
        with self._errors(name):
            body = self.client.search(
                index=self._physical(name), size=k + TIE_MARGIN, source={"includes": _SOURCE_FIELDS}, **request
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
        """The RRF retriever needs a platinum/enterprise/trial license; per-retriever weights need 9.2+."""
        version, licensed = self._server_features()
        return licensed and (weights[0] == weights[1] or version >= (9, 2))

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
        depth = max(candidates, k)
        if not query.strip() or not self.server_side_rrf(weights):
            dense = self.search_dense(name, vector, depth, filters)
            keyword = self.search_keyword(name, query, depth, filters)
            return reciprocal_rank_fusion([dense, keyword], k, rrf_k, weights)
        return self._ranked(
            name, k, retriever=self.rrf_retriever(query, vector, depth, filters, rrf_k=rrf_k, weights=weights)
        )

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
        return {"rrf": {"retrievers": children, "rank_constant": rrf_k, "rank_window_size": depth}}

    # ---- versions and aliases ------------------------------------------------------------------------

    def _alias_holders(self, alias: str) -> list[str]:
        """Physical indexes the alias points at (none when the alias does not exist yet)."""
        try:
            with self._errors():
                return sorted(self.client.indices.get_alias(name=self._physical(alias)).keys())
        except IndexMissing:
            return []

    def swap_alias(self, alias: str, name: str) -> None:
        """Point the alias at ``name`` and away from every other index, in one atomic aliases request."""
        physical_alias = self._physical(alias)
        target = self._physical(name)
        actions: list[dict[str, Any]] = [
            {"remove": {"index": holder, "alias": physical_alias}}
            for holder in self._alias_holders(alias)
            if holder != target
        ]
        actions.append({"add": {"index": target, "alias": physical_alias}})
        with self._errors(name):
            self.client.indices.update_aliases(actions=actions)

    def resolve_alias(self, alias: str) -> str | None:
        holders = self._alias_holders(alias)
        return self._logical(holders[0]) if holders else None

    def list_versions(self, alias: str) -> list[IndexVersion]:
        served = self.resolve_alias(alias)
        with self._errors():
            mappings = self.client.indices.get_mapping(index=f"{self.prefix}*", allow_no_indices=True)
        versions = []
        for physical, body in mappings.items():
            meta = dict(body.get("mappings", {}).get("_meta", {}))
            if meta.get("alias") != alias:
                continue
            name = self._logical(physical)
            versions.append(IndexVersion(name=name, count=self.count(name), served=name == served, meta=meta))
        return sorted(versions, key=lambda v: v.name, reverse=True)

    def drop(self, name: str) -> None:
        if self._physical(name) in self._served_indexes():
            raise BackendError(f"index {name!r} is served by an alias; switch the alias first")
        with self._errors(name):
            self.client.indices.delete(index=self._physical(name), ignore_unavailable=True)
        self._meta.pop(name, None)

    def _served_indexes(self) -> set[str]:
        with self._errors():
            aliases = self.client.indices.get_alias(index=f"{self.prefix}*", allow_no_indices=True)
        return {index for index, body in aliases.items() if body.get("aliases")}

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
