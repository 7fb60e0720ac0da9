"""The query API: search the served index and audit lineage over HTTP.

Every client mistake is a 4xx with ``{"error": {"code", "message"}}``; a backend that is down or an index that
does not exist yet is a 503 and the process keeps serving (the next request retries the backend).
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Any, Literal, get_args

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from rag_platform.answering import Answerer, AnswerInputError, AskRequest
from rag_platform.api.page import add_search_page, is_page_asset
from rag_platform.backends import BackendError, BackendUnavailable, IndexMissing
from rag_platform.config import Settings
from rag_platform.retrieval import Searcher
from rag_platform.search_request import RerankProvider, SearchInputError, SearchMode, SearchRequest
from rag_platform.settings_checks import check_settings

logger = logging.getLogger("rag_platform.api")

MAX_BODY_BYTES = 1024 * 1024
ErrorCode = Literal[
    "bad_request",
    "unauthorized",
    "not_found",
    "method_not_allowed",
    "payload_too_large",
    "validation_error",
    "backend_unavailable",
    "index_missing",
    "internal_error",
]
ERROR_CODES: tuple[str, ...] = get_args(ErrorCode)
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


class ErrorDetail(BaseModel):
    code: ErrorCode
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class SearchBody(BaseModel):
    """The search request; the upper bounds of ``k`` and the query's length are settings (``search_body``
    binds them per app), so the OpenAPI schema and the check in ``SearchRequest`` state one limit each.
    Strict: ``"k": true`` is not 1."""

    model_config = ConfigDict(extra="forbid", strict=True)

    query: str = Field(min_length=1, max_length=10_000)
    k: int = Field(default=10, ge=1)
    mode: SearchMode = "hybrid"
    rerank: RerankProvider | None = None
    filters: dict[str, str | list[str]] | None = None
    group_by_document: bool = False


def search_body(max_k: int, max_query_chars: int) -> type[SearchBody]:
    """``SearchBody`` with ``k`` and the query's length bounded by the settings ``api.max_k`` and
    ``api.max_query_chars``, the limits ``SearchRequest`` enforces."""
    bounded: type[SearchBody] = create_model(
        "SearchBody",
        __base__=SearchBody,
        query=(str, Field(min_length=1, max_length=max_query_chars)),
        k=(int, Field(default=10, ge=1, le=max_k, strict=True)),
    )
    return bounded


def answer_body(max_k: int) -> type[AnswerBody]:
    """``AnswerBody`` with ``k`` bounded by the setting ``api.max_k``."""
    bounded: type[AnswerBody] = create_model(
        "AnswerBody", __base__=AnswerBody, k=(int, Field(default=5, ge=1, le=max_k, strict=True))
    )
    return bounded


class Reranked(BaseModel):
    applied: bool
    provider: str
    reason: str | None


class SearchResult(BaseModel):
    rank: int
    chunk_id: str
    document_id: str
    source: str
    title: str
    text: str
    score: float
    document_version: str
    index_version: str
    run_id: str
    reranked: Reranked


class AnswerBody(BaseModel):
    """The question; ``k``'s upper bound is ``api.max_k`` (``answer_body`` binds it per app). Strict types."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(min_length=1, max_length=10_000)
    k: int = Field(default=5, ge=1)
    mode: SearchMode = "hybrid"
    rerank: RerankProvider | None = None
    filters: dict[str, str | list[str]] | None = None


class Citation(BaseModel):
    n: int
    chunk_id: str
    document_id: str
    source: str
    title: str
    quote: str
    document_version: str
    quote_start: int


class GeneratorInfo(BaseModel):
    provider: Literal["cohere", "extractive"]
    model: str
    fallback_reason: str | None


class AnswerResponse(BaseModel):
    question: str
    answer: str | None
    abstained: bool
    reason: str | None
    citations: list[Citation]
    generator: GeneratorInfo
    index_version: str
    took_ms: float
    grounding: dict[str, float]
    timings_ms: dict[str, float]


class QuarantinedDocument(BaseModel):
    source: str
    code: str
    reason: str
    since: str


class SearchResponse(BaseModel):
    query: str
    mode: str
    index_version: str
    took_ms: float
    timings_ms: dict[str, float]
    results: list[SearchResult]


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": code}
    for status, code in [
        (400, "bad_request"),
        (401, "unauthorized"),
        (404, "not_found"),
        (413, "payload_too_large"),
        (422, "validation_error"),
        (503, "backend_unavailable"),
    ]
}


def api_keys() -> list[str]:
    return [k.strip() for k in os.environ.get("RAG_PLATFORM_API_KEYS", "").split(",") if k.strip()]


def create_app(settings: Settings, searcher: Searcher | None = None) -> FastAPI:
    """The FastAPI application; ``searcher`` may be injected (tests), otherwise built from settings."""
    check_settings(settings)
    app = FastAPI(
        title="rag-platform query API",
        version="1.0.0",
        description="Search the served index and audit any result back to its source.",
    )
    state = {"searcher": searcher or Searcher.from_settings(settings)}
    answerer = Answerer(settings, state["searcher"])
    keys = api_keys()

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        # The search page's own files hold no data and must load before the page can ask for a key.
        if keys and request.url.path != "/health" and not is_page_asset(request.url.path):
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            valid = scheme.lower() == "bearer" and any(hmac.compare_digest(token.encode(), k.encode()) for k in keys)
            if not valid:
                return error(401, "unauthorized", "a valid 'Authorization: Bearer <key>' header is required")
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return error(400, "bad_request", "invalid Content-Length header")
            if int(length) > MAX_BODY_BYTES:
                return error(413, "payload_too_large", f"request body is larger than {MAX_BODY_BYTES} bytes")
        elif request.method in {"POST", "PUT", "PATCH"}:
            body = b""
            try:
                async for part in request.stream():
                    body += part
                    if len(body) > MAX_BODY_BYTES:
                        return error(413, "payload_too_large", f"request body is larger than {MAX_BODY_BYTES} bytes")
            except ClientDisconnect:
                # The client went away mid-body: nobody to answer, nothing went wrong here; no traceback.
                logger.debug("client disconnected during the request body of %s", request.url.path)
                return Response(status_code=400)
            request._body = body  # let the route read what the guard consumed
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error(exc.status_code, code, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return error(400, "bad_request", "request body is not valid JSON")
        first = problems[0] if problems else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return error(422, "validation_error", f"{where or 'body'}: {first.get('msg', 'invalid value')}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path)
        return error(500, "internal_error", "internal error; see the server log")

    def backend_error(exc: Exception) -> JSONResponse:
        if isinstance(exc, IndexMissing):
            return error(503, "index_missing", str(exc))
        return error(503, "backend_unavailable", f"search backend unavailable: {exc}")

    @app.get("/health", summary="Liveness and the served index version")
    def health() -> dict[str, Any]:
        # Open to all (no key needed): the backend's error text (hosts, index names) goes to the log only.
        try:
            version = state["searcher"].backend.resolve_alias(settings.index.alias)
            backend = "ok"
        except Exception as exc:
            logger.warning("health: search backend unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
            version, backend = None, "unavailable"
        return {"status": "ok", "index_version": version, "backend": backend, "auth_required": bool(keys)}

    def search(body: SearchBody) -> Any:
        request = SearchRequest(
            query=body.query,
            k=body.k,
            mode=body.mode,
            rerank=body.rerank,
            filters=body.filters,
            group_by_document=body.group_by_document,
        )
        try:
            return state["searcher"].search(request)
        except SearchInputError as exc:
            return error(422, exc.code, str(exc))
        except (BackendUnavailable, IndexMissing, BackendError, OSError) as exc:
            return backend_error(exc)

    # FastAPI reads the body's class from the annotation: the one bound to this app's api.max_k.
    search.__annotations__["body"] = search_body(settings.api.max_k, settings.api.max_query_chars)
    app.post("/search", response_model=SearchResponse, responses=ERROR_RESPONSES, summary="Search the served index")(
        search
    )

    def answer(body: AnswerBody) -> Any:
        request = AskRequest(body.question, k=body.k, mode=body.mode, rerank=body.rerank, filters=body.filters)
        try:
            return answerer.ask(request)
        except AnswerInputError as exc:
            return error(422, exc.code, str(exc))
        except (BackendUnavailable, IndexMissing, BackendError, OSError) as exc:
            return backend_error(exc)

    answer.__annotations__["body"] = answer_body(settings.api.max_k)
    app.post("/answer", response_model=AnswerResponse, responses=ERROR_RESPONSES, summary="Answer with citations")(
        answer
    )

    add_search_page(app)

    def lineage(identifier: str) -> Any:
        from rag_platform.lineage import audit

        if not identifier.isalnum() or len(identifier) > 128:
            return error(404, "not_found", f"unknown id {identifier!r}")
        try:
            record = audit(settings, identifier)
        except OSError as exc:
            return backend_error(exc)
        if record is None:
            return error(404, "not_found", f"unknown id {identifier!r}")
        return record

    @app.get("/documents/{document_id}", responses=ERROR_RESPONSES, summary="A document's lineage and history")
    def document(document_id: str) -> Any:
        return lineage(document_id)

    @app.get("/chunks/{chunk_id}/lineage", responses=ERROR_RESPONSES, summary="A chunk's lineage")
    def chunk_lineage(chunk_id: str) -> Any:
        return lineage(chunk_id)

    @app.get(
        "/quarantine",
        response_model=list[QuarantinedDocument],
        responses=ERROR_RESPONSES,
        summary="Documents kept out of the index, with the reason",
    )
    def quarantine() -> Any:
        from rag_platform.lineage import quarantined

        try:
            return quarantined(settings)
        except OSError as exc:
            return backend_error(exc)

    return app
