"""An Elasticsearch stand-in on 127.0.0.1 that records requests and enforces the server's rules.

The real ``elasticsearch`` client talks to it over HTTP through its own transport, so the tests see the exact
requests the backend sends (method, path, query string, headers, JSON or NDJSON body). Before answering, every
request is checked the way a 9.x server would check it, and refused with the server's status and error type:

- against the official Elasticsearch API specification (``es_spec``): the endpoint exists for the method and
  path, every query parameter and body field is defined, of the right type, required fields present, and no
  field newer than the simulated server version;
- against the semantic rules the REST reference states (each rule below cites it): RRF window and license,
  kNN bounds, result window, ``destructive_requires_name``, privileges of API keys per endpoint, bbq
  dimensions, strict mappings, visibility of documents only after a refresh, write blocks, the clone API's
  write-blocked source, and aliases that point at concrete indexes only (``_aliases`` applied atomically).

Indexes created through the stand-in are kept (mapping, settings, aliases, documents: pending until refreshed).
Requests naming an index it never created get recorded response shapes from the REST reference (a default for
each endpoint the backend uses) and per-test scripted replies (errors, bulk item failures, 429s), taken in
order. Every refusal is also listed in ``violations``, so a test can assert that nothing was refused.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from backends.es_spec import Endpoint, Spec, load_spec

PRODUCT_HEADERS = {
    "X-Elastic-Product": "Elasticsearch",
    "Content-Type": "application/vnd.elasticsearch+json;compatible-with=9",
}

Reply = tuple[int, Any]

# Security privileges reference ("Security privileges", cluster and indices privileges): a privilege grants the
# ones it implies. all > manage > monitor (cluster); for indices, manage covers index administration (create,
# delete, aliases, settings, mappings, refresh) and monitoring, write covers index/create/delete of documents.
CLUSTER_IMPLIES = {"all": {"manage", "monitor"}, "manage": {"monitor"}}
INDEX_IMPLIES = {
    "all": {
        "manage",
        "read",
        "write",
        "index",
        "create",
        "create_doc",
        "delete",
        "create_index",
        "delete_index",
        "view_index_metadata",
        "monitor",
        "maintenance",
    },
    "manage": {"create_index", "delete_index", "view_index_metadata", "monitor", "maintenance"},
    "write": {"index", "create", "create_doc", "delete"},
    "index": {"create", "create_doc"},
    "create": {"create_doc"},
}
# Endpoints whose privileges the specification leaves blank, from each API's reference page ("Prerequisites").
EXTRA_PRIVILEGES: dict[str, dict[str, list[str]]] = {
    "license.get": {"cluster": ["monitor"]},  # GET _license: the monitor cluster privilege
    "indices.exists": {"index": ["view_index_metadata"]},
    "indices.update_aliases": {"index": ["manage"]},  # manage on the index and on the alias
    "bulk": {},  # checked per item (_BULK_PRIVILEGES)
    "clear_scroll": {},
}
# A bulk item's operation -> the index privileges any of which grants it ("Bulk API", prerequisites): update
# needs index or write (create alone only adds documents); index and create are granted by create too.
_BULK_PRIVILEGES = {"delete": ["delete", "write"], "update": ["index", "write"]}
ACTION_NAMES = {
    "info": "cluster:monitor/main",
    "license.get": "cluster:monitor/xpack/license/get",
    "search": "indices:data/read/search",
    "count": "indices:data/read/search",
    "indices.create": "indices:admin/create",
    "indices.delete": "indices:admin/delete",
    "indices.put_settings": "indices:admin/settings/update",
    "indices.refresh": "indices:admin/refresh",
    "indices.get_mapping": "indices:admin/mappings/get",
    "indices.get_alias": "indices:admin/aliases/get",
    "indices.update_aliases": "indices:admin/aliases",
    "indices.exists": "indices:admin/get",
    "indices.clone": "indices:admin/resize",
    "bulk": "indices:data/write/bulk",
}
# The RRF retriever is an ENTERPRISE feature (RRFRankPlugin: LicensedFeature "rank-rrf", OperationMode
# ENTERPRISE; a trial license grants every feature while active).
RRF_LICENSES = frozenset({"enterprise", "trial"})
# KnnSearchBuilder: num_candidates may not exceed 10,000; IndexSettings.MAX_RESULT_WINDOW_SETTING: 10,000.
NUM_CANDIDATES_LIMIT = 10_000
MAX_RESULT_WINDOW = 10_000
# DenseVectorFieldMapper.BBQ_MIN_DIMS: bbq_hnsw and bbq_flat refuse fewer than 64 dimensions.
BBQ_MIN_DIMS = 64


# When the specification cannot be installed: the URL templates and privileges it gives for the endpoints the
# backend uses, so that the semantic rules still apply (request validation is then skipped).
_FALLBACK_URLS: dict[str, tuple[list[tuple[str, list[str]]], dict[str, list[str]]]] = {
    "info": ([("/", ["GET"])], {"cluster": ["monitor"]}),
    "license.get": ([("/_license", ["GET"])], {}),
    "bulk": ([("/_bulk", ["POST", "PUT"]), ("/{index}/_bulk", ["POST", "PUT"])], {}),
    "search": ([("/_search", ["GET", "POST"]), ("/{index}/_search", ["GET", "POST"])], {"index": ["read"]}),
    "count": ([("/_count", ["GET", "POST"]), ("/{index}/_count", ["GET", "POST"])], {"index": ["read"]}),
    "scroll": ([("/_search/scroll", ["GET", "POST"])], {"index": ["read"]}),
    "clear_scroll": ([("/_search/scroll", ["DELETE"])], {}),
    "indices.create": ([("/{index}", ["PUT"])], {"index": ["create_index", "manage"]}),
    "indices.delete": ([("/{index}", ["DELETE"])], {"index": ["delete_index"]}),
    "indices.exists": ([("/{index}", ["HEAD"])], {}),
    "indices.put_settings": ([("/{index}/_settings", ["PUT"])], {"index": ["manage"]}),
    "indices.refresh": ([("/{index}/_refresh", ["GET", "POST"])], {"index": ["maintenance"]}),
    "indices.get_mapping": ([("/{index}/_mapping", ["GET"])], {"index": ["view_index_metadata"]}),
    "indices.update_aliases": ([("/_aliases", ["POST"])], {}),
    "indices.clone": ([("/{index}/_clone/{target}", ["PUT", "POST"])], {"index": ["manage"]}),
    "indices.get_alias": (
        [("/_alias/{name}", ["GET"]), ("/{index}/_alias", ["GET"]), ("/{index}/_alias/{name}", ["GET"])],
        {"index": ["view_index_metadata"]},
    ),
}
FALLBACK_SPEC = Spec(
    {
        "types": [],
        "endpoints": [
            {"name": name, "urls": [{"path": p, "methods": m} for p, m in urls], "privileges": privileges}
            for name, (urls, privileges) in _FALLBACK_URLS.items()
        ],
    }
)


class Refused(Exception):
    def __init__(self, status: int, kind: str, reason: str):
        super().__init__(reason)
        self.status, self.kind, self.reason = status, kind, reason

    def reply(self) -> Reply:
        return self.status, {"error": {"type": self.kind, "reason": self.reason}, "status": self.status}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def ndjson(self) -> list[Any]:
        return [json.loads(line) for line in self.raw.decode().splitlines() if line.strip()]

    def flag(self, name: str) -> bool:
        return self.query.get(name, ["false"])[-1] in {"true", ""}


@dataclass
class ApiKey:
    """An API key's role descriptor: cluster privileges and (index name patterns, privileges) pairs."""

    cluster: frozenset[str] = frozenset()
    indices: tuple[tuple[tuple[str, ...], frozenset[str]], ...] = ()

    def cluster_allows(self, privileges: list[str]) -> bool:
        held = set(self.cluster) | {p for c in self.cluster for p in CLUSTER_IMPLIES.get(c, set())}
        return any(p in held for p in privileges)

    def index_allows(self, name: str, privileges: list[str]) -> bool:
        for patterns, granted in self.indices:
            held = set(granted) | {p for g in granted for p in INDEX_IMPLIES.get(g, set())}
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns) and any(p in held for p in privileges):
                return True
        return False


@dataclass
class IndexState:
    mappings: dict[str, Any]
    settings: dict[str, Any]
    aliases: set[str] = field(default_factory=set)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)  # searchable (refreshed)
    pending: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # written, not yet refreshed

    def live(self) -> dict[str, dict[str, Any]]:
        """The real-time view (get/mget): pending writes included."""
        view = dict(self.docs)
        for doc_id, source in self.pending.items():
            if source is None:
                view.pop(doc_id, None)
            else:
                view[doc_id] = source
        return view


@dataclass
class RecordingElasticsearch:
    """Records requests, enforces the server's rules, then answers from scripted replies, the indexes it holds,
    or recorded default shapes."""

    version: str = "9.1.5"
    license_type: str = "basic"
    license_status: str = "active"
    requests: list[Recorded] = field(default_factory=list)
    scripted: list[tuple[str, str, Reply | Callable[[Recorded], Reply]]] = field(default_factory=list)
    search_hits: list[dict[str, Any]] = field(default_factory=list)
    api_keys: dict[str, ApiKey] = field(default_factory=dict)
    destructive_requires_name: bool = True  # the default since 8.0 (action.destructive_requires_name)
    indexes: dict[str, IndexState] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    spec: Spec | None = field(default_factory=load_spec)
    # True: a concrete index the stand-in does not hold is a 404, as on a server (False: recorded defaults).
    strict_indexes: bool = False
    _scrolls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, method: str, path_pattern: str, reply: Reply | Callable[[Recorded], Reply]) -> None:
        """Answer the next request matching (method, regex on path) with ``reply``, once."""
        self.scripted.append((method, path_pattern, reply))

    def of(self, method: str, path_pattern: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.fullmatch(path_pattern, r.path)]

    def add_api_key(self, key: str, cluster: list[str], indices: list[tuple[list[str], list[str]]]) -> None:
        self.api_keys[key] = ApiKey(
            frozenset(cluster), tuple((tuple(names), frozenset(privs)) for names, privs in indices)
        )

    @property
    def version_tuple(self) -> tuple[int, int]:
        major, minor = (int(part) for part in self.version.split(".")[:2])
        return major, minor

    # ---- the request cycle ---------------------------------------------------------------------------

    def reply(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            try:
                key = self._authenticate(request)
                endpoint, params = self._endpoint(request)
                self._validate(request, endpoint)
                self._authorize(request, endpoint, params, key)
                self._semantics(request, endpoint, params)
            except Refused as refused:
                self.violations.append(f"{request.method} {request.path}: {refused.status} {refused.reason}")
                return refused.reply()
            for i, (method, pattern, reply) in enumerate(self.scripted):
                if method == request.method and re.fullmatch(pattern, request.path):
                    del self.scripted[i]
                    return reply(request) if callable(reply) else reply
            try:
                held = self._stateful(request, endpoint.name, params, key)
            except Refused as refused:
                self.violations.append(f"{request.method} {request.path}: {refused.status} {refused.reason}")
                return refused.reply()
            return held if held is not None else self.default_reply(request)

    def _authenticate(self, request: Recorded) -> ApiKey | None:
        """None is a superuser (basic auth or no security); an unknown API key is a 401."""
        auth = request.headers.get("authorization", "")
        if not auth.startswith("ApiKey "):
            return None
        key = self.api_keys.get(auth.removeprefix("ApiKey "))
        if key is None and self.api_keys:
            raise Refused(401, "security_exception", "unable to authenticate with provided credentials")
        return key

    def _endpoint(self, request: Recorded) -> tuple[Endpoint, dict[str, str]]:
        found = (self.spec or FALLBACK_SPEC).endpoint(request.method, request.path)
        if found is None:
            raise Refused(
                400,
                "illegal_argument_exception",
                f"no handler found for uri [{request.path}] and method [{request.method}]",
            )
        endpoint, params = found
        return endpoint, {k: unquote(v) for k, v in params.items()}

    def _validate(self, request: Recorded, endpoint: Endpoint) -> None:
        """The request against the API specification: unknown parameters and bad bodies are 400s."""
        if self.spec is None:
            return
        errors = self.spec.check_query(endpoint, request.query)
        if errors:
            raise Refused(400, "illegal_argument_exception", errors[0])
        if endpoint.name == "bulk":
            errors = self._check_bulk_lines(request.ndjson)
        elif request.raw:
            body = request.json
            if endpoint.name in {"indices.put_settings", "indices.clone"}:
                # "To revert a setting to the default value, use null" (update index settings API); a clone
                # clears settings copied from its source the same way.
                body = _without_nulls(body)
            errors = self.spec.check_body(endpoint, body, version=self.version_tuple)
        if errors:
            raise Refused(400, "x_content_parse_exception", "; ".join(errors[:3]))

    def _check_bulk_lines(self, lines: list[Any]) -> list[str]:
        assert self.spec is not None
        errors: list[str] = []
        i = 0
        while i < len(lines):
            errors += self.spec.check_value(lines[i], ("_global.bulk", "OperationContainer"), f"line {i + 1}")
            op = next(iter(lines[i]), "")
            i += 1 if op == "delete" else 2
        return errors

    def _authorize(self, request: Recorded, endpoint: Endpoint, params: dict[str, str], key: ApiKey | None) -> None:
        if key is None:
            return
        needed = EXTRA_PRIVILEGES.get(endpoint.name, endpoint.privileges)
        action = ACTION_NAMES.get(endpoint.name, endpoint.name)
        if needed.get("cluster") and not key.cluster_allows(needed["cluster"]):
            raise Refused(
                403,
                "security_exception",
                f"action [{action}] is unauthorized for API key; this action is granted by the cluster "
                f"privileges [{','.join(needed['cluster'])},manage,all]",
            )
        names = [n for n in params.get("index", params.get("name", "")).split(",") if n]
        if endpoint.name == "bulk":
            names_privs = [
                (meta["_index"], _BULK_PRIVILEGES.get(op, ["index", "create", "write"]))
                for op, meta in (next(iter(line.items())) for line in request.ndjson if _is_action(line))
            ]
        elif endpoint.name == "indices.update_aliases":
            actions = request.json.get("actions", [])
            names_privs = [
                (n, ["manage"])
                for a in actions
                for body in a.values()
                for n in (body.get("index"), body.get("alias"))
                if n
            ]
        elif endpoint.name == "indices.clone":
            # "Clone index API", prerequisites: manage on the index cloned; the target gets no more access than
            # the source (ResizeRequestInterceptor), so the key needs the same privilege on it.
            names_privs = [(params["index"], ["manage"]), (params["target"], ["manage"])]
        else:
            names_privs = [(n, needed.get("index", [])) for n in names if needed.get("index")]
        for name, privileges in names_privs:
            # Wildcards resolve to the authorized indexes only; concrete names must be authorized.
            if privileges and not _is_pattern(name) and not key.index_allows(name, privileges):
                raise Refused(
                    403,
                    "security_exception",
                    f"action [{action}] is unauthorized for API key on indices [{name}], this action is "
                    f"granted by the index privileges [{','.join(privileges)},all]",
                )

    def _semantics(self, request: Recorded, endpoint: Endpoint, params: dict[str, str]) -> None:
        if endpoint.name == "indices.delete" and self.destructive_requires_name:
            # action.destructive_requires_name defaults to true since 8.0 (PR #85591): DestructiveOperations.
            names = params.get("index", "")
            if any(_is_pattern(n) or n == "_all" for n in names.split(",")):
                raise Refused(400, "illegal_argument_exception", "Wildcard expressions or all indices are not allowed")
        if endpoint.name == "indices.create" and request.raw:
            self._check_mapping(request.json.get("mappings", {}))
        if endpoint.name in {"search", "count"} and request.raw:
            self._check_search(request.json)

    def _check_mapping(self, mappings: dict[str, Any]) -> None:
        for name, prop in mappings.get("properties", {}).items():
            if prop.get("type") != "dense_vector":
                continue
            kind = (prop.get("index_options") or {}).get("type", "")
            dims = prop.get("dims")
            if kind.startswith("bbq_") and isinstance(dims, int) and dims < BBQ_MIN_DIMS:
                raise Refused(
                    400,
                    "mapper_parsing_exception",
                    f"Failed to parse mapping: [{kind}] does not support dimensions fewer than "
                    f"{BBQ_MIN_DIMS}; provided={dims} (field [{name}])",
                )

    def _check_search(self, body: dict[str, Any]) -> None:
        size = body.get("size", 10)
        # IndexSettings.MAX_RESULT_WINDOW_SETTING: from + size <= index.max_result_window.
        if body.get("from", 0) + size > MAX_RESULT_WINDOW:
            raise Refused(
                400,
                "illegal_argument_exception",
                f"Result window is too large, from + size must be less than or equal to: [{MAX_RESULT_WINDOW}]",
            )
        knn = body.get("knn")
        for clause in knn if isinstance(knn, list) else [knn] if knn else []:
            _check_knn(clause)
        source = body.get("_source")
        if isinstance(source, dict) and "exclude_vectors" in source and self.version_tuple < (9, 2):
            # _source.exclude_vectors is new in 9.2 (9.2 release notes: vectors excluded from _source); older
            # servers' FetchSourceContext.fromXContent refuses keys it does not know.
            raise Refused(400, "parsing_exception", "Unknown key for a VALUE_BOOLEAN in [exclude_vectors].")
        retriever = body.get("retriever")
        if retriever:
            self._check_retriever(retriever, size)

    def _check_retriever(self, container: dict[str, Any], size: int) -> None:
        kind, retriever = next(iter(container.items()))
        if kind == "knn":
            _check_knn(retriever)
        if kind != "rrf":
            return
        if self.license_type not in RRF_LICENSES or self.license_status != "active":
            # LicenseUtils.newComplianceException, raised by RRFRetrieverBuilder for a non-enterprise license.
            raise Refused(
                403, "security_exception", "current license is non-compliant for [Reciprocal Rank Fusion (RRF)]"
            )
        window = retriever.get("rank_window_size", 10)
        # CompoundRetrieverBuilder.validate: the window must hold the page.
        if window < size:
            raise Refused(
                400,
                "action_request_validation_exception",
                f"Validation Failed: 1: [rrf] requires [rank_window_size: {window}] be greater than or "
                f"equal to [size: {size}];",
            )
        # RRFRetrieverBuilder: rank_constant must be >= 1.
        if retriever.get("rank_constant", 60) < 1:
            raise Refused(
                400, "illegal_argument_exception", "[rank_constant] must be greater or equal to [1] for [rrf]"
            )
        for child in retriever.get("retrievers", []):
            if "retriever" in child:
                if self.version_tuple < (9, 2):
                    # Weighted RRF components ({"retriever", "weight"}) are new in 9.2.
                    raise Refused(400, "x_content_parse_exception", "[rrf] unknown field [retriever]")
                child = child["retriever"]
            self._check_retriever(child, window)

    # ---- indexes it holds ----------------------------------------------------------------------------

    def _resolve(self, expression: str, key: ApiKey | None, privileges: list[str]) -> list[str]:
        """Concrete indexes for names, aliases and wildcards (wildcards: the authorized indexes only)."""
        found: list[str] = []
        for part in expression.split(","):
            for name, state in sorted(self.indexes.items()):
                hit = fnmatch.fnmatchcase(name, part) or any(fnmatch.fnmatchcase(a, part) for a in state.aliases)
                if hit and (not _is_pattern(part) or key is None or key.index_allows(name, privileges)):
                    found.append(name)
        return found

    def _holding(self) -> bool:
        """Whether the stand-in answers index requests from the indexes it holds."""
        return bool(self.indexes) or self.strict_indexes

    def _stateful(self, request: Recorded, endpoint: str, params: dict[str, str], key: ApiKey | None) -> Reply | None:
        """Answers for indexes created through the stand-in; None leaves the request to the recorded defaults."""
        index = params.get("index", "")
        if endpoint == "indices.create":
            if index in self.indexes:
                raise Refused(400, "resource_already_exists_exception", f"index [{index}] already exists")
            if self._is_alias(index):
                # MetadataCreateIndexService.validateIndexName: an index may not take an alias's name.
                raise Refused(
                    400, "invalid_index_name_exception", f"Invalid index name [{index}], already exists as alias"
                )
            body = request.json if request.raw else {}
            self.indexes[index] = IndexState(body.get("mappings", {}), dict(body.get("settings", {})))
            return 200, {"acknowledged": True, "shards_acknowledged": True, "index": index}
        if endpoint == "indices.clone":
            return self._clone(request, index, params["target"]) if self._holding() else None
        if endpoint == "bulk":
            return (
                self._bulk(request)
                if any(
                    _is_action(line) and next(iter(line.values()))["_index"] in self.indexes for line in request.ndjson
                )
                else None
            )
        if endpoint == "indices.update_aliases":
            return self._update_aliases(request.json["actions"]) if self._holding() else None
        if endpoint == "indices.get_alias":
            if not self._holding():
                return None
            names = self._resolve(index or "*", key, ["view_index_metadata"])
            alias = params.get("name")
            body = {
                n: {
                    "aliases": {
                        a: {} for a in sorted(self.indexes[n].aliases) if not alias or fnmatch.fnmatch(a, alias)
                    }
                }
                for n in names
            }
            if alias:
                body = {n: b for n, b in body.items() if b["aliases"]}
                if not body:
                    return 404, {"error": f"alias [{alias}] missing", "status": 404}
            return 200, body
        if endpoint == "indices.get_mapping" and _is_pattern(index) and self._holding():
            names = self._resolve(index, key, ["view_index_metadata"])
            return 200, {n: {"mappings": self.indexes[n].mappings} for n in names}
        if endpoint == "scroll":
            hits = self._scrolls.get("stand-in-scroll", [])
            self._scrolls["stand-in-scroll"] = hits[1000:]
            return 200, {**_search_response(hits[:1000]), "_scroll_id": "stand-in-scroll"}
        if endpoint == "clear_scroll":
            self._scrolls.clear()
            return 200, {"succeeded": True, "num_freed": 1}
        if not index or _is_pattern(index):
            return None
        if endpoint == "indices.delete":
            for part in index.split(","):
                if part not in self.indexes and self._is_alias(part):
                    # DeleteIndexRequest resolves concrete indices only (aliases not supported).
                    raise Refused(400, "illegal_argument_exception", _alias_expression(part))
        names = self._resolve(index, key, ["read"])
        if not names and self.strict_indexes:
            if endpoint == "indices.exists":
                return 404, None
            if endpoint == "indices.delete" and request.flag("ignore_unavailable"):
                return 200, {"acknowledged": True}
            missing = index.split(",")[0]
            return 404, {
                "error": {
                    "type": "index_not_found_exception",
                    "reason": f"no such index [{missing}]",
                    "index": missing,
                },
                "status": 404,
            }
        if not names:
            return None
        state = self.indexes[names[0]]
        if endpoint == "indices.exists":
            return 200, None
        if endpoint == "indices.delete":
            for name in names:
                del self.indexes[name]
            return 200, {"acknowledged": True}
        if endpoint == "indices.get_mapping":
            return 200, {names[0]: {"mappings": state.mappings}}
        if endpoint == "indices.put_settings":
            updates = _flatten(request.json).items()
            if any(k in {"number_of_shards", "index.number_of_shards"} for k, _ in updates):
                raise Refused(
                    400,
                    "illegal_argument_exception",
                    "Can't update non dynamic settings [[index.number_of_shards]] for open indices",
                )
            for target in names:
                _apply_settings(self.indexes[target].settings, dict(updates))
            return 200, {"acknowledged": True}
        if endpoint == "indices.refresh":
            for name in names:
                target = self.indexes[name]
                target.docs = target.live()
                target.pending.clear()
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
        if endpoint == "count":
            # Count and search read the last refreshed view only (near real-time search).
            return 200, {"count": sum(len(self.indexes[n].docs) for n in names)}
        if endpoint == "search":
            return 200, self._search(request, names)
        return None

    def _bulk(self, request: Recorded) -> Reply:
        lines = request.ndjson
        statuses: dict[str, int] = {}
        reasons: dict[str, tuple[str, str]] = {}
        i = 0
        while i < len(lines):
            op, meta = next(iter(lines[i].items()))
            state = self.indexes.get(meta["_index"])
            if state is None:
                statuses[meta["_id"]] = 404
                reasons[meta["_id"]] = ("index_not_found_exception", f"no such index [{meta['_index']}]")
            elif _write_blocked(state):
                # "Index block settings": index.blocks.write refuses writes (ClusterBlockException, 403 per item).
                statuses[meta["_id"]] = 403
                reasons[meta["_id"]] = (
                    "cluster_block_exception",
                    f"index [{meta['_index']}] blocked by: [FORBIDDEN/8/index write (api)];",
                )
            elif op == "delete":
                if meta["_id"] not in state.live():
                    statuses[meta["_id"]] = 404
                state.pending[meta["_id"]] = None
            elif op == "update":
                # A partial document merged into the stored one (the update API); a missing one is refused.
                current = state.live().get(meta["_id"])
                partial = lines[i + 1].get("doc", {})
                problem = _document_problem(state.mappings, partial)
                if current is None:
                    statuses[meta["_id"]] = 404
                    reasons[meta["_id"]] = ("document_missing_exception", f"[{meta['_id']}]: document missing")
                elif problem:
                    statuses[meta["_id"]] = 400
                    reasons[meta["_id"]] = problem
                else:
                    state.pending[meta["_id"]] = {**current, **partial}
            else:
                problem = _document_problem(state.mappings, lines[i + 1])
                if problem:
                    statuses[meta["_id"]] = 400
                    reasons[meta["_id"]] = problem
                else:
                    state.pending[meta["_id"]] = lines[i + 1]
            i += 1 if op == "delete" else 2
        body = bulk_response(lines, statuses)
        for item in body["items"]:
            result = next(iter(item.values()))
            if result["_id"] in reasons:
                kind, reason = reasons[result["_id"]]
                result["error"] = {"type": kind, "reason": reason}
        return 200, body

    def _is_alias(self, name: str) -> bool:
        return any(name in state.aliases for state in self.indexes.values())

    def _update_aliases(self, actions: list[dict[str, Any]]) -> Reply:
        """All actions or none (one cluster state update), as TransportIndicesAliasesAction and
        MetadataIndexAliasesService apply them. Every ``remove_index`` runs first, whatever its place ("Aliases
        API"), so an alias may take the name of an index deleted in the same request, and other actions naming
        that index find it missing. Actions name concrete indexes: an alias there is refused (aliases point at
        indexes, not at aliases), a missing index is a 404, and an alias may not take the name of an index that
        stays. Removing an alias the index does not have is skipped unless ``must_exist`` is true; when nothing
        at all is left to do, the aliases are not found (404)."""

        def missing(index: str) -> Reply:
            reason = f"no such index [{index}]"
            return 404, {"error": {"type": "index_not_found_exception", "reason": reason}, "status": 404}

        removed: list[str] = []
        for action in actions:
            op, body = next(iter(action.items()))
            if op != "remove_index":
                continue
            index = body["index"]
            if index not in self.indexes:
                if self._is_alias(index):
                    raise Refused(400, "illegal_argument_exception", _alias_expression(index))
                return missing(index)
            removed.append(index)
        plan: list[tuple[str, str, str]] = []
        for action in actions:
            op, body = next(iter(action.items()))
            if op == "remove_index":
                continue
            index, alias = body["index"], body["alias"]
            if index not in self.indexes and self._is_alias(index):
                raise Refused(400, "illegal_argument_exception", _alias_expression(index))
            if index not in self.indexes or index in removed:
                return missing(index)
            if op == "add" and alias in self.indexes and alias not in removed:
                raise Refused(
                    400,
                    "invalid_alias_name_exception",
                    f"Invalid alias name [{alias}]: an index or data stream exists with the same name as the alias",
                )
            if op == "remove" and alias not in self.indexes[index].aliases:
                if body.get("must_exist") is True:
                    reason = f"aliases [{alias}] missing"
                    return 404, {"error": {"type": "aliases_not_found_exception", "reason": reason}, "status": 404}
                continue
            plan.append((op, index, alias))
        if not plan and not removed:
            reason = "aliases missing"
            return 404, {"error": {"type": "aliases_not_found_exception", "reason": reason}, "status": 404}
        for index in removed:
            del self.indexes[index]
        for op, index, alias in plan:
            (self.indexes[index].aliases.add if op == "add" else self.indexes[index].aliases.discard)(alias)
        return 200, {"acknowledged": True}

    def _clone(self, request: Recorded, source: str, target: str) -> Reply:
        """The clone index API ("Clone index API"): the source must be write-blocked (MetadataCreateIndexService
        .validateResize: an IllegalStateException, 500) and the target must not exist; the clone gets the source's
        mappings, its settings except the replica count (and auto-expansion), overlaid with the request's (null
        clears one), the aliases the request names, and every document the source acknowledged: the source is
        flushed and its segments hard-linked, so the clone searches them at once."""
        state = self.indexes.get(source)
        if state is None:
            if self._is_alias(source):
                raise Refused(400, "illegal_argument_exception", _alias_expression(source))
            raise Refused(404, "index_not_found_exception", f"no such index [{source}]")
        if target in self.indexes or self._is_alias(target):
            raise Refused(400, "resource_already_exists_exception", f"index [{target}] already exists")
        if not _write_blocked(state):
            raise Refused(
                500,
                "illegal_state_exception",
                f'index [{source}] must be read-only to resize index. use "index.blocks.write=true"',
            )
        body = request.json if request.raw else {}
        if body.get("mappings"):
            raise Refused(
                400,
                "illegal_argument_exception",
                "mappings are not allowed when resizing indices, all mappings are copied from the source index",
            )
        settings = {k: v for k, v in state.settings.items() if k not in {"number_of_replicas", "auto_expand_replicas"}}
        _apply_settings(settings, _flatten(body.get("settings", {})))
        self.indexes[target] = IndexState(
            copy.deepcopy(state.mappings),
            settings,
            aliases=set(body.get("aliases", {})),
            docs=copy.deepcopy(state.live()),
        )
        return 200, {"acknowledged": True, "shards_acknowledged": True, "index": target}

    def _search(self, request: Recorded, names: list[str]) -> dict[str, Any]:
        """Search the refreshed documents: query DSL (match_all, ids, match, terms, bool), kNN by cosine and the
        RRF retriever, scored as the server scores them (BM25, (1 + cos) / 2, 1 / (rank_constant + rank))."""
        body = request.json if request.raw else {}
        corpus = [
            (name, doc_id, source) for name in names for doc_id, source in sorted(self.indexes[name].docs.items())
        ]
        if self.search_hits:
            ranked = [(h["_score"], h) for h in self.search_hits]
        else:
            ranked = [
                (score, {"_index": index, "_id": doc_id, "_score": score, "_source": self._source(index, source, body)})
                for (index, doc_id, source), score in self._top(body, corpus)
            ]
        hits = [hit for _, hit in ranked]
        size = body.get("size", 10)
        if "scroll" in request.query:
            self._scrolls["stand-in-scroll"] = hits[size:]
            response = _search_response(hits[:size])
            response["_scroll_id"] = "stand-in-scroll"
            return response
        return _search_response(hits[:size])

    def _source(self, index: str, source: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """Source filtering; from 9.2 on, dense vectors are left out of _source unless
        ``exclude_vectors: false`` asks for them (9.2 release notes, "exclude vectors from source")."""
        shown = _filter_source(source, body)
        spec = body.get("_source")
        wants_vectors = isinstance(spec, dict) and spec.get("exclude_vectors") is False
        if self.version_tuple >= (9, 2) and not wants_vectors:
            properties = self.indexes[index].mappings.get("properties", {})
            shown = {k: v for k, v in shown.items() if properties.get(k, {}).get("type") != "dense_vector"}
        return shown

    def _top(self, body: dict[str, Any], corpus: list[Doc]) -> list[tuple[Doc, float]]:
        if "retriever" in body:
            return self._retrieve(body["retriever"], corpus)
        if "knn" in body:
            return _knn(body["knn"], corpus)
        query = body.get("query", {"match_all": {}})
        scored = [(doc, _score(query, doc[2], corpus)) for doc in corpus]
        return sorted(((d, sc) for d, sc in scored if sc is not None), key=lambda item: (-item[1], item[0][1]))

    def _retrieve(self, container: dict[str, Any], corpus: list[Doc]) -> list[tuple[Doc, float]]:
        kind, retriever = next(iter(container.items()))
        if kind == "knn":
            return _knn(retriever, corpus)
        if kind == "standard":
            return self._top({"query": retriever.get("query", {"match_all": {}})}, corpus)
        window, constant = retriever.get("rank_window_size", 10), retriever.get("rank_constant", 60)
        fused: dict[tuple[str, str], float] = {}
        docs: dict[tuple[str, str], Doc] = {}
        for child in retriever["retrievers"]:
            weight = child.get("weight", 1.0) if "retriever" in child else 1.0
            ranked = self._retrieve(child.get("retriever", child), corpus)[:window]
            for rank, (doc, _) in enumerate(ranked, start=1):
                fused[doc[:2]] = fused.get(doc[:2], 0.0) + weight / (constant + rank)
                docs[doc[:2]] = doc
        return sorted(((docs[key], score) for key, score in fused.items()), key=lambda item: (-item[1], item[0][1]))

    # ---- recorded default shapes (indexes the stand-in did not create) ---------------------------------

    def default_reply(self, request: Recorded) -> Reply:
        method, path = request.method, request.path
        if path == "/":
            return 200, {"name": "node-1", "version": {"number": self.version}, "tagline": "You Know, for Search"}
        if path == "/_license":
            return 200, {"license": {"status": self.license_status, "type": self.license_type}}
        if path == "/_bulk":
            return 200, bulk_response(request.ndjson)
        if path == "/_aliases":
            return 200, {"acknowledged": True}
        if path == "/_search/scroll":
            return (200, {"succeeded": True, "num_freed": 1}) if method == "DELETE" else (200, _search_response([]))
        if path.endswith("/_search"):
            return 200, _search_response(self.search_hits)
        if path.endswith("/_count"):
            return 200, {"count": 0}
        if path.endswith("/_refresh"):
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
        if path.endswith("/_settings"):
            return 200, {"acknowledged": True}
        if path.startswith("/_alias/"):
            return 404, {"error": f"alias [{path.removeprefix('/_alias/')}] missing", "status": 404}
        if path.endswith("/_alias"):
            # GET /{index}/_alias: an index named like the pattern's stem, without aliases (the default index
            # the other recorded shapes describe); no index at all for a bare wildcard.
            stem = path.split("/")[1].removesuffix("*")
            return 200, ({stem: {"aliases": {}}} if stem and not _is_pattern(stem) else {})
        if method == "HEAD":
            return 404, None
        if method == "PUT":
            return 200, {"acknowledged": True, "shards_acknowledged": True, "index": path.strip("/")}
        if path.endswith("/_mapping"):
            index = path.split("/")[1]
            return 200, {index: {"mappings": {"_meta": {"model": "m", "chunker_fingerprint": "c"}}}}
        if method == "DELETE":
            return 200, {"acknowledged": True}
        return 400, {"error": {"type": "unrecorded_request", "reason": f"{method} {path}"}, "status": 400}


def _check_knn(clause: dict[str, Any]) -> None:
    """KnnSearchBuilder: k >= 1, num_candidates >= k and <= 10,000."""
    k = clause.get("k", 10)
    candidates = clause.get("num_candidates", min(math.ceil(1.5 * k), NUM_CANDIDATES_LIMIT))
    if k < 1:
        raise Refused(400, "illegal_argument_exception", "[k] must be greater than 0")
    if candidates < k:
        raise Refused(400, "illegal_argument_exception", "[num_candidates] cannot be less than [k]")
    if candidates > NUM_CANDIDATES_LIMIT:
        raise Refused(400, "illegal_argument_exception", f"[num_candidates] cannot exceed [{NUM_CANDIDATES_LIMIT}]")


def _document_problem(mappings: dict[str, Any], source: dict[str, Any]) -> tuple[str, str] | None:
    """A strict mapping refuses unknown fields; dense vectors must have exactly ``dims`` numbers."""
    properties = mappings.get("properties", {})
    for name, value in source.items():
        prop = properties.get(name)
        if prop is None:
            if mappings.get("dynamic") == "strict":
                return "strict_dynamic_mapping_exception", (
                    f"[1:1] mapping set to strict, dynamic introduction of [{name}] within [_doc] is not allowed"
                )
            continue
        if prop.get("type") == "dense_vector" and len(value) != prop.get("dims"):
            return "document_parsing_exception", (
                f"The [dense_vector] field [{name}] in doc has a different number of dimensions [{len(value)}] than "
                f"defined in the mapping [{prop.get('dims')}]"
            )
    return None


Doc = tuple[str, str, dict[str, Any]]  # (index, _id, _source)
_TOKEN = re.compile(r"\w+")


def _tokens(text: str) -> list[str]:
    """The standard analyzer, for the ASCII words these tests use: lowercased word characters."""
    return _TOKEN.findall(text.lower())


def _field_value(source: dict[str, Any], field_name: str) -> Any:
    # title.raw is the keyword sub-field of title: the same value, not analysed.
    return source.get(field_name.removesuffix(".raw"))


def _score(query: dict[str, Any], source: dict[str, Any], corpus: list[Doc]) -> float | None:
    """The query's score for one document (None: no match); bool filters match without scoring."""
    kind, clause = next(iter(query.items()))
    if kind == "match_all":
        return 1.0
    if kind == "ids":
        return 1.0 if source.get("chunk_id") in set(clause["values"]) else None
    if kind == "terms":
        (field_name, values), *_ = ((k, v) for k, v in clause.items() if k != "boost")
        return 0.0 if _field_value(source, field_name) in set(values) else None
    if kind == "match":
        field_name, spec = next(iter(clause.items()))
        text = spec["query"] if isinstance(spec, dict) else spec
        return _bm25(field_name, _tokens(str(text)), source, corpus)
    if kind == "bool":
        total = 0.0
        for key in ("must", "filter"):
            clauses = clause.get(key, [])
            for sub in clauses if isinstance(clauses, list) else [clauses]:
                score = _score(sub, source, corpus)
                if score is None:
                    return None
                total += score if key == "must" else 0.0
        return total
    raise Refused(400, "parsing_exception", f"the stand-in does not evaluate [{kind}] queries")


def _bm25(field_name: str, terms: list[str], source: dict[str, Any], corpus: list[Doc]) -> float | None:
    """Lucene's BM25 (k1 = 1.2, b = 0.75) over the refreshed documents of the searched indexes."""
    docs = [_tokens(str(s.get(field_name, ""))) for _, _, s in corpus]
    mine = _tokens(str(source.get(field_name, "")))
    average = sum(map(len, docs)) / len(docs) if docs else 1.0
    score = 0.0
    matched = False
    for term in set(terms):
        frequency = mine.count(term)
        if not frequency:
            continue
        matched = True
        having = sum(1 for d in docs if term in d)
        idf = math.log(1 + (len(docs) - having + 0.5) / (having + 0.5))
        score += idf * frequency * 2.2 / (frequency + 1.2 * (0.25 + 0.75 * len(mine) / average))
    return score if matched else None


def _knn(clause: dict[str, Any], corpus: list[Doc]) -> list[tuple[Doc, float]]:
    """Exact nearest neighbours among the documents the filter admits: (1 + cos) / 2, the top k."""
    filters = clause.get("filter", [])
    filters = filters if isinstance(filters, list) else [filters]
    admitted = [d for d in corpus if all(_score(f, d[2], corpus) is not None for f in filters)]
    scored = [(d, (1.0 + _cosine(clause["query_vector"], d[2]["vector"])) / 2.0) for d in admitted if "vector" in d[2]]
    return sorted(scored, key=lambda item: (-item[1], item[0][1]))[: clause.get("k", 10)]


def _filter_source(source: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    spec = body.get("_source")
    if isinstance(spec, dict) and "includes" in spec:
        return {k: v for k, v in source.items() if k in spec["includes"]}
    return dict(source)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _search_response(hits: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "took": 1,
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": len(hits), "relation": "eq"}, "hits": hits},
    }


def _is_action(line: Any) -> bool:
    return isinstance(line, dict) and len(line) == 1 and next(iter(line)) in {"index", "create", "delete", "update"}


def _is_pattern(name: str) -> bool:
    return "*" in name or "?" in name


def _write_blocked(state: IndexState) -> bool:
    return str(state.settings.get("blocks.write", False)).lower() == "true"


def _alias_expression(name: str) -> str:
    """IndexNameExpressionResolver's refusal of an alias where an API takes concrete indices only."""
    return f"The provided expression [{name}] matches an alias, specify the corresponding concrete indices instead."


def _apply_settings(settings: dict[str, Any], updates: dict[str, Any]) -> None:
    """Flat setting updates, with or without the ``index.`` prefix; null resets a setting to its default."""
    for name, value in updates.items():
        name = name.removeprefix("index.")
        if value is None:
            settings.pop(name, None)
        else:
            settings[name] = value


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def bulk_response(lines: list[Any], statuses: dict[str, int] | None = None) -> dict[str, Any]:
    """A bulk response for NDJSON action lines: every item succeeds unless ``statuses`` says otherwise."""
    items = []
    i = 0
    while i < len(lines):
        op, meta = next(iter(lines[i].items()))
        i += 1 if op == "delete" else 2
        status = (statuses or {}).get(meta["_id"], 200 if op in ("delete", "update") else 201)
        item: dict[str, Any] = {"_index": meta["_index"], "_id": meta["_id"], "status": status}
        if status >= 400:
            kind = "es_rejected_execution_exception" if status == 429 else "document_parsing_exception"
            if status == 404 and op == "update":
                item["error"] = {"type": "document_missing_exception", "reason": f"[{meta['_id']}]: document missing"}
            elif status == 404:
                item["result"] = "not_found"
            else:
                item["error"] = {"type": kind, "reason": f"recorded failure for {meta['_id']}"}
        else:
            item["result"] = {"delete": "deleted", "update": "updated"}.get(op, "created")
        items.append({op: item})
    return {"took": 3, "errors": any(next(iter(x.values()))["status"] >= 400 for x in items), "items": items}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = Recorded(
            self.command,
            parts.path,
            parse_qs(parts.query, keep_blank_values=True),
            {k.lower(): v for k, v in self.headers.items()},
            raw,
        )
        status, body = self.server.recorder.reply(request)
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in PRODUCT_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    recorder: RecordingElasticsearch


def serve(recorder: RecordingElasticsearch) -> tuple[str, Callable[[], None]]:
    """Start the endpoint on a free 127.0.0.1 port; returns (url, stop)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.recorder = recorder
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_address[1]}", stop
