"""Small API holes, through a real uvicorn server on 127.0.0.1 (no index needed): one bound for ``k`` in code and
OpenAPI, strict types, quiet client disconnects, and a ``/health`` that tells strangers nothing about the backend."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from rag_platform.config import load_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving() -> Iterator[tuple[httpx.Client, int]]:
    """The app of the current environment's settings behind a real uvicorn server on 127.0.0.1."""
    import uvicorn

    from rag_platform.api.app import create_app

    port = free_port()
    # log_config=None: uvicorn's own loggers propagate, so the test sees every line it would print.
    config = uvicorn.Config(create_app(load_settings()), host="127.0.0.1", port=port, log_config=None)
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client, port
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def server(platform_home: Path) -> Iterator[tuple[httpx.Client, int]]:
    with serving() as running:
        yield running


@pytest.mark.parametrize("max_k", [None, "7"])
def test_k_has_one_bound_in_code_and_openapi(
    platform_home: Path, monkeypatch: pytest.MonkeyPatch, max_k: str | None
) -> None:
    if max_k:
        monkeypatch.setenv("RAG_PLATFORM__API__MAX_K", max_k)
    settings = load_settings()
    with serving() as (client, _):
        schema = client.get("/openapi.json").json()["components"]["schemas"]["SearchBody"]["properties"]["k"]
        assert schema["maximum"] == settings.api.max_k and schema["minimum"] == 1
        query = client.get("/openapi.json").json()["components"]["schemas"]["SearchBody"]["properties"]["query"]
        assert query["maxLength"] == settings.api.max_query_chars
        over = client.post("/search", json={"query": "x", "k": settings.api.max_k + 1})
        assert over.status_code == 422 and over.json()["error"]["code"] == "validation_error"
        at_limit = client.post("/search", json={"query": "x", "k": settings.api.max_k})
        assert at_limit.status_code == 503 and at_limit.json()["error"]["code"] == "index_missing"  # valid


@pytest.mark.parametrize("k", [True, "5", 5.0, [5]])
def test_k_must_be_a_json_integer(server: tuple[httpx.Client, int], k: object) -> None:
    client, _ = server
    response = client.post("/search", json={"query": "glaciers", "k": k})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


def test_a_client_that_disconnects_mid_body_logs_no_traceback(
    server: tuple[httpx.Client, int], caplog: pytest.LogCaptureFixture
) -> None:
    client, port = server
    caplog.set_level(logging.DEBUG)
    for framing, partial in [
        (b"Transfer-Encoding: chunked\r\n", b'5\r\n{"que\r\n'),
        (b"Content-Length: 1000\r\n", b'{"query": "x"'),
    ]:
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + framing + b"\r\n")
            raw.sendall(partial)
            time.sleep(0.3)
        time.sleep(0.5)
    assert client.get("/health").status_code == 200  # still serving
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not noisy, [r.getMessage() for r in noisy]


def test_health_without_a_key_shows_no_backend_details(
    platform_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RAG_PLATFORM__INDEX__BACKEND", "elasticsearch")
    monkeypatch.setenv("RAG_ES_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("RAG_ES_TIMEOUT_S", "1")
    monkeypatch.setenv("RAG_PLATFORM_API_KEYS", "s3cret")
    with serving() as (client, _):
        health = client.get("/health")
    assert health.status_code == 200
    assert health.json()["backend"] == "unavailable"
    assert "127.0.0.1" not in health.text and "elasticsearch" not in health.text.lower()
    assert any("unavailable" in r.getMessage() for r in caplog.records)  # the details went to the log
