"""Recorded Cohere HTTP exchanges for the SDK: an httpx transport that replays responses in order and keeps
the requests it saw, so the real cohere SDK (retries, error mapping, parsing) runs against them."""

from __future__ import annotations

import httpx


class RecordedCohere:
    """Replays recorded Cohere v2 responses (or raises recorded transport errors) in order."""

    def __init__(self, *responses: httpx.Response | Exception):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.responses.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def client(self) -> httpx.Client:
        """An httpx client for ``cohere.ClientV2(httpx_client=...)`` that talks to this recording."""
        return httpx.Client(transport=httpx.MockTransport(self))


def error(status: int, message: str, **headers: str) -> httpx.Response:
    """A Cohere error response as the API sends it."""
    return httpx.Response(status, json={"message": message}, headers=headers)
