"""One lazily built Cohere SDK client per configured service (Rerank, chat), shared by its callers' threads."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import httpx


def cohere_client(
    api_key: str, timeout_s: float, http_client: httpx.Client | None = None, base_url: str | None = None
) -> Any:
    """A cohere SDK v2 client (imported on first use); ``http_client`` lets tests replay recorded exchanges."""
    import cohere

    kwargs: dict[str, Any] = {"api_key": api_key, "timeout": timeout_s}
    if http_client is not None:
        kwargs["httpx_client"] = http_client
    if base_url:
        kwargs["base_url"] = base_url
    return cohere.ClientV2(**kwargs)


class CohereService:
    """A Cohere model behind an API key; the client is built on first use. Subclasses name the error that
    says the service cannot run (``unavailable``) and their default timeout."""

    unavailable: ClassVar[type[Exception]] = RuntimeError
    default_timeout_s: ClassVar[float] = 10.0

    def __init__(
        self,
        model: str,
        api_key: str | None,
        timeout_s: float | None = None,
        max_retries: int = 2,
        http_client: httpx.Client | None = None,
        base_url: str | None = None,
    ):
        self.model = model
        self.api_key = api_key
        self.timeout_s = self.default_timeout_s if timeout_s is None else timeout_s
        self.max_retries = max_retries
        self.http_client = http_client
        self.base_url = base_url
        self._client: Any = None
        self._lock = threading.Lock()

    def _sdk(self) -> Any:
        if not self.api_key:
            raise self.unavailable("COHERE_API_KEY is not set")
        with self._lock:
            if self._client is None:
                self._client = cohere_client(self.api_key, self.timeout_s, self.http_client, self.base_url)
            return self._client
