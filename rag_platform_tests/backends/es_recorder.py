"""A recording Elasticsearch endpoint on 127.0.0.1 for request-contract tests.

The real ``elasticsearch`` client talks to it over HTTP through its own transport, so the tests see the exact
requests the backend sends (method, path, query string, headers, JSON or NDJSON body). Responses are recorded
shapes from Elasticsearch's REST reference: a default for each endpoint the backend uses, and per-test
scripted replies (errors, bulk item failures, 429s) taken in order.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PRODUCT_HEADERS = {
    "X-Elastic-Product": "Elasticsearch",
    "Content-Type": "application/vnd.elasticsearch+json;compatible-with=9",
}

Reply = tuple[int, Any]


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


@dataclass
class RecordingElasticsearch:
    """Records requests; answers from scripted replies first, then from ``default_reply``."""

    version: str = "9.1.5"
    license_type: str = "basic"
    requests: list[Recorded] = field(default_factory=list)
    scripted: list[tuple[str, str, Reply | Callable[[Recorded], Reply]]] = field(default_factory=list)
    search_hits: list[dict[str, Any]] = field(default_factory=list)

    def script(self, method: str, path_pattern: str, reply: Reply | Callable[[Recorded], Reply]) -> None:
        """Answer the next request matching (method, regex on path) with ``reply``, once."""
        self.scripted.append((method, path_pattern, reply))

    def of(self, method: str, path_pattern: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.fullmatch(path_pattern, r.path)]

    def reply(self, request: Recorded) -> Reply:
        self.requests.append(request)
        for i, (method, pattern, reply) in enumerate(self.scripted):
            if method == request.method and re.fullmatch(pattern, request.path):
                del self.scripted[i]
                return reply(request) if callable(reply) else reply
        return self.default_reply(request)

    def default_reply(self, request: Recorded) -> Reply:
        method, path = request.method, request.path
        if path == "/":
            return 200, {"name": "node-1", "version": {"number": self.version}, "tagline": "You Know, for Search"}
        if path == "/_license":
            return 200, {"license": {"status": "active", "type": self.license_type}}
        if path == "/_bulk":
            return 200, bulk_response(request.ndjson)
        if path == "/_aliases":
            return 200, {"acknowledged": True}
        if path.endswith("/_search"):
            hits = self.search_hits
            return 200, {"took": 1, "timed_out": False, "hits": {"total": {"value": len(hits)}, "hits": hits}}
        if path.endswith("/_count"):
            return 200, {"count": 0}
        if path.endswith("/_refresh"):
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
        if path.endswith("/_settings"):
            return 200, {"acknowledged": True}
        if path.startswith("/_alias/") or path.endswith("/_alias"):
            return 404, {"error": "alias [x] missing", "status": 404}
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


def bulk_response(lines: list[Any], statuses: dict[str, int] | None = None) -> dict[str, Any]:
    """A bulk response for NDJSON action lines: every item succeeds unless ``statuses`` says otherwise."""
    items = []
    i = 0
    while i < len(lines):
        op, meta = next(iter(lines[i].items()))
        i += 1 if op == "delete" else 2
        status = (statuses or {}).get(meta["_id"], 200 if op == "delete" else 201)
        item: dict[str, Any] = {"_index": meta["_index"], "_id": meta["_id"], "status": status}
        if status >= 400:
            kind = "es_rejected_execution_exception" if status == 429 else "document_parsing_exception"
            if status == 404:
                item["result"] = "not_found"
            else:
                item["error"] = {"type": kind, "reason": f"recorded failure for {meta['_id']}"}
        else:
            item["result"] = "deleted" if op == "delete" else "created"
        items.append({op: item})
    return {"took": 3, "errors": any(next(iter(x.values()))["status"] >= 400 for x in items), "items": items}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = Recorded(
            self.command, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()}, raw
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
