"""Parsing: titles, structure kept, and every unreadable case named."""

from __future__ import annotations

import pytest

from rag_platform.parsing import UnreadableDocument, parse_document


@pytest.mark.parametrize(
    ("name", "data", "title"),
    [
        ("guide.md", b"# Install Guide\n\nText here.", "Install Guide"),
        ("guide.md", b"Intro line\n\n## Later heading\n", "Later heading"),
        ("setext.md", b"Big Title\n=========\n\nbody", "Big Title"),
        ("no-heading_here.md", b"just text, no heading", "no heading here"),
        ("notes.txt", b"First line is the title\nsecond line", "First line is the title"),
        ("page.html", b"<html><head><title>Page T</title></head><body><p>hello world</p></body></html>", "Page T"),
        ("bom.md", "\ufeff# With BOM\n\nx".encode(), "With BOM"),
    ],
)
def test_titles(name: str, data: bytes, title: str) -> None:
    assert parse_document(data, name)[0] == title


def test_html_keeps_structure_and_drops_scripts() -> None:
    html = b"""<html><head><title>T</title><script>var x = 1;</script></head><body>
      <h2>Setup</h2><p>Install   the   tool.</p><ul><li>one</li><li>two</li></ul><ol><li>first</li></ol>
      <pre>pip install x\n  --flag</pre><nav>menu</nav></body></html>"""
    _, text, mime = parse_document(html, "a.html")
    assert mime == "text/html"
    assert "## Setup" in text
    assert "Install the tool." in text
    assert "- one\n- two" in text
    assert "1. first" in text
    assert "```\npip install x\n  --flag\n```" in text
    assert "var x" not in text and "menu" not in text


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.md", b"", "empty file"),
        ("blank.md", b"  \n\t\n", "empty file"),
        ("binary.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR", "binary content"),
        ("latin1.md", "caf\u00e9".encode("latin-1"), "invalid UTF-8"),
        ("script.html", b"<html><script>only()</script></html>", "no text content"),
        ("image.png", b"abc", "unsupported file type"),
    ],
)
def test_unreadable_inputs_name_their_reason(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableDocument, match=reason):
        parse_document(data, name)
