"""Bytes of a source file -> title and structured text (Markdown), or a reason it cannot be read.

Pure functions: no I/O. HTML is rendered to Markdown so every format reaches the chunker with the same
structure markers (``#`` headings, ``-`` list items, fenced code blocks).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from rag_platform.chunking import clean_heading
from rag_platform.records import QuarantineCode

MIME_BY_SUFFIX = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".text": "text/plain",
    ".html": "text/html",
    ".htm": "text/html",
}

_WHITESPACE = " \t"


class UnreadableDocument(ValueError):
    """The bytes cannot become a document; the message is the quarantine reason, ``code`` its stable code."""

    def __init__(self, reason: str, code: str = QuarantineCode.UNPARSEABLE):
        super().__init__(reason)
        self.code = code


def mime_for(path: str) -> str | None:
    return MIME_BY_SUFFIX.get(PurePosixPath(path).suffix.lower())


def decode_text(data: bytes) -> str:
    """UTF-8 text (BOM allowed); binary content and invalid UTF-8 are refused with a reason."""
    if not data.strip():
        raise UnreadableDocument("empty file", QuarantineCode.EMPTY)
    if b"\x00" in data[:8192]:
        raise UnreadableDocument("binary content (NUL bytes)", QuarantineCode.BINARY)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableDocument(f"invalid UTF-8 at byte {exc.start}", QuarantineCode.BAD_ENCODING) from None
    if not text.strip():
        raise UnreadableDocument("empty file", QuarantineCode.EMPTY)
    return text


def _title_from_name(path: str) -> str:
    stem = PurePosixPath(path).stem
    return re.sub(r"[-_]+", " ", stem).strip() or stem


def atx_heading(line: str) -> str | None:
    """The text of an ATX heading line (``## Title ##``), else None. Plain string operations, no regex: a
    heading of 20 KB of spaces costs one pass over the line (the old regex backtracked super-linearly)."""
    body = line.lstrip(" ")
    if len(line) - len(body) > 3 or not body.startswith("#"):
        return None
    level = len(body) - len(body.lstrip("#"))
    rest = body[level:]
    if level > 6 or not rest or rest[0] not in _WHITESPACE:
        return None
    rest = rest.strip()
    closed = rest.rstrip("#")
    if closed != rest and (not closed or closed[-1] in _WHITESPACE):
        rest = closed.rstrip()  # a closing sequence (``# Title ##``) is not part of the title
    return rest or None


def _setext_underline(line: str) -> bool:
    marks = line.rstrip()
    return bool(marks) and (marks == "=" * len(marks) or marks == "-" * len(marks))


def markdown_title(text: str, path: str) -> str:
    """The first ATX or setext heading, else a title made from the file name; linear in the text's length."""
    previous = ""
    for line in _lines(text):
        if previous and previous[0] not in _WHITESPACE and _setext_underline(line):
            return clean_heading(previous.strip())
        heading = atx_heading(line)
        if heading:
            return clean_heading(heading)
        previous = line
    return _title_from_name(path)


def _lines(text: str) -> Iterator[str]:
    """Lines without their ends, one at a time (a title usually sits in the first few)."""
    start = 0
    while start <= len(text):
        end = text.find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start:end].rstrip("\r")
        start = end + 1


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
        return " ".join(node.get_text(" ", strip=True).split())

    # An explicit stack of child iterators, not recursion: HTML nested 10,000 deep is a document, not an error.
    stack = [iter(body.children)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            continue
        if isinstance(child, NavigableString):
            text = " ".join(str(child).split())
            if text:
                blocks.append(text)
            continue
        if not isinstance(child, Tag):
            continue
        name = child.name.lower()
        if len(name) == 2 and name[0] == "h" and name[1] in "123456":
            blocks.append("#" * int(name[1]) + " " + inline(child))
        elif name == "pre":
            blocks.append("```\n" + child.get_text().strip("\n") + "\n```")
        elif name in {"ul", "ol"}:
            items = []
            for n, item in enumerate(child.find_all("li", recursive=False), start=1):
                marker = f"{n}." if name == "ol" else "-"
                items.append(f"{marker} {inline(item)}")
            blocks.append("\n".join(items))
        elif name in {"p", "blockquote", "table", "dl"}:
            text = inline(child)
            if text:
                blocks.append(("> " if name == "blockquote" else "") + text)
        else:
            stack.append(iter(child.children))
    return "\n\n".join(b for b in blocks if b.strip()), title


def parse_document(data: bytes, path: str) -> tuple[str, str, str]:
    """Parse file bytes into (title, text, mime); raises UnreadableDocument with the quarantine reason."""
    mime = mime_for(path)
    if mime is None:
        raise UnreadableDocument(f"unsupported file type {PurePosixPath(path).suffix or '(none)'}")  # not scanned
    text = decode_text(data)
    if mime == "text/html":
        text, html_title = html_to_markdown(text)
        if not text.strip():
            raise UnreadableDocument("no text content in HTML", QuarantineCode.EMPTY)
        return html_title or markdown_title(text, path), text, mime
    if mime == "text/markdown":
        return markdown_title(text, path), text, mime
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = first_line if 0 < len(first_line) <= 120 else _title_from_name(path)
    return title, text, mime
