"""A real uvicorn server on 127.0.0.1 in a thread, serving the query API of one platform home."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from rag_platform.config import load_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, home: Path, keys: str | None = None):
        import uvicorn

        from rag_platform.api.app import create_app

        if keys is not None:
            os.environ["RAG_PLATFORM_API_KEYS"] = keys
        try:
            app = create_app(load_settings(home))
        finally:
            os.environ.pop("RAG_PLATFORM_API_KEYS", None)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        self.client = httpx.Client(base_url=self.base_url, timeout=60)
        return self.client

    def __exit__(self, *exc: Any) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
