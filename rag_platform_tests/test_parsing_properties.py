"""Property tests: the parsers on adversarial text either return a document or refuse it with a reason and a
code; they never raise anything else, never recurse per nesting level, and find headings the way CommonMark
writes them."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_platform.parsing import UnreadableDocument, atx_heading, html_to_markdown, markdown_title, parse_document
from rag_platform.records import QUARANTINE_CODES

# Alphabets of the characters the parsers treat specially, so examples pile them up as an attacker would.
MARKDOWN_CHARS = st.sampled_from([" ", "\t", "#", "\n", "\r", "=", "-", "*", "`", "a", "Z", "1", "\u00e9", "\u3042"])
TAGS = ["<div>", "</div>", "<p>", "</p>", "<h2>", "</h2>", "<ul><li>", "</li></ul>", "<pre>", "</pre>", "<b>", "</i>"]
HTML_PIECES = st.sampled_from(
    [*TAGS, "<script>", "</script>", "<!--", "-->", "<", ">", "&amp;", "&#", " ", "\n", "text", "\u00e9"]
)
adversarial_markdown = st.text(MARKDOWN_CHARS, max_size=400)
adversarial_html = st.lists(HTML_PIECES, max_size=300).map("".join)
words = st.text(st.sampled_from("abcdefgh XYZ"), min_size=1, max_size=20).filter(lambda t: t.strip() != "")
fast = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(
    data=st.one_of(adversarial_markdown.map(str.encode), st.binary(max_size=300)),
    suffix=st.sampled_from([".md", ".txt", ".html"]),
)
def test_parsing_returns_a_document_or_a_coded_refusal(data: bytes, suffix: str) -> None:
    try:
        title, text, mime = parse_document(data, "doc" + suffix)
    except UnreadableDocument as refused:
        assert refused.code in QUARANTINE_CODES and str(refused)
        return
    assert text.strip() and isinstance(title, str) and mime.startswith("text/")


@fast
@given(html=adversarial_html)
def test_html_keeps_every_visible_word(html: str) -> None:
    """Outside scripts, comments and malformed tags (``<`` right before a word opens a tag named by it), every
    occurrence of a word in the markup reaches the text."""
    text, _ = html_to_markdown(html)
    hidden = ("<script", "<!--", "<text", "</text")
    if not any(marker in html for marker in hidden):
        assert text.count("text") == html.count("text")


@fast
@given(level=st.integers(1, 6), title=words, pad=st.text(" \t", max_size=30), closing=st.integers(0, 4))
def test_atx_headings_are_read_as_commonmark_writes_them(level: int, title: str, pad: str, closing: int) -> None:
    line = "#" * level + " " + pad + title + pad + (" " + "#" * closing if closing else "")
    assert atx_heading(line) == title.strip()
    assert atx_heading("#" * 7 + " " + title) is None
    assert atx_heading("#" * level + title.lstrip()) is None  # no space after the marks: not a heading


@pytest.mark.parametrize("depth", [1_000, 10_000, 50_000])
def test_deep_html_is_walked_without_recursion(depth: int) -> None:
    text, _ = html_to_markdown("<div>" * depth + "<p>bottom of the nest</p>" + "</div>" * depth)
    assert text == "bottom of the nest"


@fast
@given(spaces=st.integers(0, 50_000), title=words)
def test_whitespace_heavy_headings_cost_one_pass(spaces: int, title: str) -> None:
    """The old heading regex backtracked quadratically over runs of spaces; any size now stays correct (a title
    reads as a reader sees it: inner runs of spaces collapse to one)."""
    text = "#" + " " * (spaces + 1) + title + " " * spaces + "\n\nbody"
    assert markdown_title(text, "x.md") == " ".join(title.split())
