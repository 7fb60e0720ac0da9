"""The search page for people: static HTML, JavaScript and CSS shipped in the package, served by the API.

No build step and nothing external: the page calls the API's own routes (``POST /search``, ``POST /answer``,
``GET /documents/{id}``, ``GET /chunks/{id}/lineage``) from the browser, so ``/?q=QUERY`` shows that query's
results and answer after a plain page load. The page's files hold no data; with API keys configured they load
without one and the page asks for a key before its first data request.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

PAGE_PREFIX = "/ui/"


def is_page_asset(path: str) -> bool:
    """The page and its files: served without an API key."""
    return path == "/" or path.startswith(PAGE_PREFIX)


def add_search_page(app: FastAPI) -> None:
    """Mount the page at ``/`` and its files under ``/ui/``."""
    index = (files("rag_platform.api") / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(index, headers={"Cache-Control": "no-cache"})

    app.mount(PAGE_PREFIX.rstrip("/"), StaticFiles(packages=[("rag_platform.api", "static")]), name="ui")
