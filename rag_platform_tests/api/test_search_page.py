"""The search page in a real headless browser (Debian's chromium driven by Playwright) against a real server.

Skips, saying why, when no chromium is installed; `make test` installs it when it can (apt-get, as root).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from served_api import Server

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("RAG_PLATFORM_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM:
        pytest.skip("no chromium on PATH (apt-get install chromium): the search page browser tests need one")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("COHERE_API_KEY", raising=False)
    monkeypatch.setenv("RAG_PLATFORM__ANSWER__MIN_SIMILARITY", "0")  # the tiny test model: always answer
    context = browser.new_context()
    opened = context.new_page()
    opened.set_default_timeout(60_000)
    yield opened
    context.close()


def requests_seen(page: Any) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    return seen


def test_plain_load_of_a_query_url_shows_results_answer_and_lineage(page: Any, served: Server) -> None:
    seen = requests_seen(page)
    page.goto(f"{served.base_url}/?q={quote_plus('Sicilian Defence chess opening')}&mode=keyword")
    first = page.locator("#results li.result").first
    first.wait_for()
    assert page.locator("#q").input_value() == "Sicilian Defence chess opening"
    assert first.locator(".title").inner_text() == "Chess openings"
    assert first.locator(".source").inner_text().endswith("chess.txt")
    assert "Sicilian Defence" in first.locator(".snippet").inner_text()
    version = served.client.get("/health").json()["index_version"]
    assert f"index version {version}" in first.locator(".meta").inner_text()
    assert "score " in first.locator(".meta").inner_text()

    page.locator("#answer:not([hidden]) a.marker").first.wait_for()
    answer = served.client.post(
        "/answer", json={"question": "Sicilian Defence chess opening", "k": 5, "mode": "keyword"}
    ).json()
    assert page.locator("#answer-text").inner_text() == answer["answer"]
    assert page.locator("#citations li").count() == len(answer["citations"])
    assert answer["citations"][0]["quote"] in page.locator("#citations li blockquote").first.inner_text()

    page.locator("a.marker").first.click()  # a citation opens its document and lineage
    detail = page.locator("#detail")
    detail.locator("dd").first.wait_for()
    body = detail.inner_text()
    cited = answer["citations"][0]
    assert cited["document_version"] in body and cited["chunk_id"] in body and "History" in body
    page.keyboard.press("Escape")
    assert detail.is_hidden()
    assert all(url.startswith(served.base_url) for url in seen), [u for u in seen if served.base_url not in u]


def test_keyboard_only_search_updates_the_address(page: Any, served: Server) -> None:
    page.goto(f"{served.base_url}/")
    page.evaluate("document.activeElement.blur()")  # focus away from the box, then come back with /
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("volcano eruption")
    page.keyboard.press("Enter")
    page.locator("#results li.result").first.wait_for()
    assert "q=volcano+eruption" in page.url
    page.keyboard.press("Tab")  # from the box, Tab moves on through focusable controls
    assert page.evaluate("document.activeElement.id") == "mode"
    page.locator("#results .title").first.focus()
    page.keyboard.press("Enter")  # results open with the keyboard too
    page.locator("#detail dd").first.wait_for()
    assert page.evaluate("document.activeElement.id") == "detail"


def test_page_asks_for_an_api_key(
    browser: Any, built_home: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    monkeypatch.setenv("RAG_PLATFORM_HOME", str(built_home))
    monkeypatch.setenv("RAG_PLATFORM__EMBEDDING__MODEL", str(tiny_model_dir))
    monkeypatch.setenv("RAG_PLATFORM__ANSWER__MIN_SIMILARITY", "0")
    server = Server(built_home, keys="alpha,beta")
    with server as client:
        assert client.get("/").status_code == 200  # the page itself loads without a key; its data does not
        assert client.post("/search", json={"query": "tides"}).status_code == 401
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{server.base_url}/")  # asks on load, before any search needs the key
        page.locator("#key-form:not([hidden])").wait_for()
        assert client.get("/health").json()["auth_required"] is True
        page.goto(f"{server.base_url}/?q=tides")
        page.locator("#key-form:not([hidden])").wait_for()
        page.locator("#api-key").fill("gamma")
        page.keyboard.press("Enter")
        page.locator("#key-form:not([hidden])").wait_for()
        assert "not accepted" in page.locator("#key-message").inner_text()
        page.locator("#api-key").fill("beta")
        page.keyboard.press("Enter")
        page.locator("#results li.result").first.wait_for()
        page.locator("#answer:not([hidden])").wait_for()
        assert page.locator("#key-form").is_hidden()
        context.close()
