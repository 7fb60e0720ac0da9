"""Bytes of a source file -> title and structured text (Markdown), or a reason it cannot be read.

Pure functions: no I/O. HTML is rendered to Markdown so every format reaches the chunker with the same
structure markers (``#`` headings, ``-`` list items, fenced code blocks).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

MIME_BY_SUFFIX = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".text": "text/plain",
    ".html": "text/html",
    ".htm": "text/html",
}

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_SETEXT = re.compile(r"^(\S[^\n]*)\n(=+|-+)\s*$", re.MULTILINE)


class UnreadableDocument(ValueError):
    """The bytes cannot become a document; the message is the quarantine reason."""


def mime_for(path: str) -> str | None:
    return MIME_BY_SUFFIX.get(PurePosixPath(path).suffix.lower())


def decode_text(data: bytes) -> str:
    """UTF-8 text (BOM allowed); binary content and invalid UTF-8 are refused with a reason."""
    if not data.strip():
        raise UnreadableDocument("empty file")
    if b"\x00" in data[:8192]:
        raise UnreadableDocument("binary content (NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableDocument(f"invalid UTF-8 at byte {exc.start}") from None
    if not text.strip():
        raise UnreadableDocument("empty file")
    return text


def _title_from_name(path: str) -> str:
    stem = PurePosixPath(path).stem
    return re.sub(r"[-_]+", " ", stem).strip() or stem


def markdown_title(text: str, path: str) -> str:
    first_atx = _HEADING.search(text)
    first_setext = _SETEXT.search(text)
    candidates = [m for m in (first_atx, first_setext) if m]
    if candidates:
        best = min(candidates, key=lambda m: m.start())
        return best.group(1).strip()
    return _title_from_name(path)


def html_to_markdown(html: str) -> tuple[str, str | None]:
    """Render HTML to Markdown-structured text; returns (text, <title> or None)."""
    from bs4 import BeautifulSoup, NavigableString, Tag

    soup = BeautifulSoup(html, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else None
    for tag in soup(["script", "style", "noscript", "template", "nav", "footer", "header", "head"]):
        tag.decompose()
    body = soup.body or soup
    blocks: list[str] = []

    def inline(node: Tag) -> str:
        return re.sub(r"\s+", " ", node.get_text(" ", strip=True))

    def walk(node: Tag, list_depth: int = 0) -> None:
        for child in node.children:
            if isinstance(child, NavigableString):
                text = re.sub(r"\s+", " ", str(child)).strip()
                if text:
                    blocks.append(text)
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name.lower()
            if re.fullmatch(r"h[1-6]", name):
                blocks.append("#" * int(name[1]) + " " + inline(child))
            elif name == "pre":
                blocks.append("```\n" + child.get_text().strip("\n") + "\n```")
            elif name in {"ul", "ol"}:
                items = []
                for n, item in enumerate(child.find_all("li", recursive=False), start=1):
                    marker = f"{n}." if name == "ol" else "-"
                    items.append("  " * list_depth + f"{marker} {inline(item)}")
                blocks.append("\n".join(items))
            elif name in {"p", "blockquote", "table", "dl"}:
                text = inline(child)
                if text:
                    blocks.append(("> " if name == "blockquote" else "") + text)
            else:
                walk(child, list_depth)

    walk(body)
    return "\n\n".join(b for b in blocks if b.strip()), title


def parse_document(data: bytes, path: str) -> tuple[str, str, str]:
    """Parse file bytes into (title, text, mime); raises UnreadableDocument with the quarantine reason."""
    mime = mime_for(path)
    if mime is None:
        raise UnreadableDocument(f"unsupported file type {PurePosixPath(path).suffix or '(none)'}")
    text = decode_text(data)
    if mime == "text/html":
        text, html_title = html_to_markdown(text)
        if not text.strip():
            raise UnreadableDocument("no text content in HTML")
        return html_title or markdown_title(text, path), text, mime
    if mime == "text/markdown":
        return markdown_title(text, path), text, mime
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = first_line if 0 < len(first_line) <= 120 else _title_from_name(path)
    return title, text, mime
