"""Chunking: token bounds from the model's tokenizer, structure, determinism and id stability."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from rag_platform import chunking
from rag_platform.chunking import Chunker, ChunkerConfig, HFTokenCounter, TokenCounter, split_sections
from rag_platform.records import ParsedDocument, chunk_id

MODEL = "all-MiniLM-L6-v2"
LONG = " ".join(f"Sentence {i} explains how the embedding cache avoids recomputing vectors." for i in range(60))
DOC_TEXT = f"""# Guide

Intro paragraph.

## Install

- step one
- step two

```bash
pip install rag-platform
```

## Details

### Deep

{LONG}
"""


def make_doc(text: str = DOC_TEXT, uri: str = "file:///docs/guide.md") -> ParsedDocument:
    return ParsedDocument(uri=uri, document_version="v1", title="Guide", text=text, mime="text/markdown")


@pytest.fixture(scope="module")
def counter() -> HFTokenCounter:
    return HFTokenCounter(MODEL)


def chunker(counter: TokenCounter, max_tokens: int = 64, overlap: int = 16) -> Chunker:
    return Chunker(ChunkerConfig(max_tokens, overlap, MODEL), counter)


def test_sections_follow_heading_paths() -> None:
    paths = [s.heading_path for s in split_sections(DOC_TEXT, "Guide")]
    assert paths == [("Guide",), ("Guide", "Install"), ("Guide", "Details", "Deep")]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(32, 0), (64, 16), (200, 32)])
def test_every_chunk_fits_the_model_token_budget(counter: HFTokenCounter, max_tokens: int, overlap: int) -> None:
    chunks = chunker(counter, max_tokens, overlap).chunk(make_doc())
    assert chunks
    for c in chunks:
        assert c.token_count == counter([c.text])[0]
        assert 0 < c.token_count <= max_tokens


def test_chunks_carry_heading_context_and_keep_blocks_whole(counter: HFTokenCounter) -> None:
    chunks = chunker(counter, 200, 0).chunk(make_doc())
    install = next(c for c in chunks if c.heading_path == "Guide > Install")
    assert install.text.startswith("Guide > Install\n\n")
    assert "- step one\n- step two" in install.text
    assert "```bash\npip install rag-platform\n```" in install.text


def test_never_splits_inside_a_word(counter: HFTokenCounter) -> None:
    words = set(DOC_TEXT.split())
    for c in chunker(counter, 40, 8).chunk(make_doc()):
        body = c.text.split("\n\n", 1)[1]
        assert set(body.split()) <= words


def test_overlap_repeats_trailing_sentences(counter: HFTokenCounter) -> None:
    chunks = [c for c in chunker(counter, 64, 20).chunk(make_doc()) if c.heading_path.endswith("Deep")]
    assert len(chunks) > 2
    for first, second in itertools.pairwise(chunks):
        last_sentence = first.text.rstrip().rsplit(". ", 1)[-1]
        assert last_sentence.split(" ")[1] in second.text.split("\n\n", 1)[1][:80]


def test_same_input_same_chunks_and_ids(counter: HFTokenCounter) -> None:
    a = chunker(counter).chunk(make_doc())
    b = chunker(counter).chunk(make_doc())
    assert a == b
    assert len({c.chunk_id for c in a}) == len(a)


def test_ids_depend_on_uri_text_and_config_only(counter: HFTokenCounter) -> None:
    base = chunker(counter).chunk(make_doc())
    new_version = chunker(counter).chunk(
        ParsedDocument("file:///docs/guide.md", "v2", "Guide", DOC_TEXT, "text/markdown")
    )
    assert [c.chunk_id for c in base] == [c.chunk_id for c in new_version]
    moved = chunker(counter).chunk(make_doc(uri="file:///docs/moved.md"))
    assert not {c.chunk_id for c in base} & {c.chunk_id for c in moved}
    other_config = Chunker(ChunkerConfig(64, 8, MODEL), counter).chunk(make_doc())
    assert base[0].text == other_config[0].text and base[0].chunk_id != other_config[0].chunk_id
    fp = ChunkerConfig(64, 16, MODEL).fingerprint
    assert base[0].chunk_id == chunk_id("file:///docs/guide.md", base[0].text, fp)


def test_repeated_text_in_one_document_gets_distinct_ids(counter: HFTokenCounter) -> None:
    text = "# T\n\n## A\n\nsame words\n\n## A\n\nsame words\n"
    chunks = chunker(counter).chunk(make_doc(text))
    assert len(chunks) == 2 and chunks[0].text == chunks[1].text
    assert chunks[0].chunk_id != chunks[1].chunk_id


def test_a_word_longer_than_the_budget_is_still_bounded(counter: HFTokenCounter) -> None:
    text = "# T\n\n" + "-".join(["abc"] * 400)
    for c in chunker(counter, 32, 0).chunk(make_doc(text)):
        assert c.token_count <= 32


def test_a_document_of_headings_only_is_still_indexable(counter: HFTokenCounter) -> None:
    chunks = chunker(counter).chunk(make_doc("# Roadmap\n\n## Streaming ingestion\n\n## Multi-tenant aliases\n"))
    assert len(chunks) == 1
    assert "Streaming ingestion" in chunks[0].text and "Multi-tenant aliases" in chunks[0].text


def test_worker_processes_give_the_same_chunks_in_document_order(counter: HFTokenCounter) -> None:
    docs = [make_doc(DOC_TEXT.replace("step one", f"step {i}"), f"file:///docs/guide-{i}.md") for i in range(40)]
    local = chunker(counter)
    expected = [local.chunk(doc) for doc in docs]
    with local.parallel(2):
        assert local._pool is not None
        assert local.chunk_many(docs) == expected
    assert local._pool is None


def test_re_chunking_an_edited_document_counts_only_the_changed_section(counter: HFTokenCounter) -> None:
    counted: list[str] = []

    def counting(texts: Sequence[str]) -> list[int]:
        counted.extend(texts)
        return counter(texts)

    remembering = chunker(counting)
    remembering.chunk(make_doc())
    edited = make_doc(DOC_TEXT.replace("step two", "step two and a half"))
    counted.clear()
    chunks = remembering.chunk(edited)
    assert chunks == chunker(counter).chunk(edited), "remembered sections give a fresh chunker's chunks"
    assert counted and all("Deep" not in text and "Intro paragraph" not in text for text in counted)
    assert any("step two and a half" in text for text in counted)


def test_the_section_memo_is_bounded(counter: HFTokenCounter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunking, "SECTION_MEMO_CHARS", 2_000)
    bounded = chunker(counter)
    for i in range(20):
        bounded.chunk(make_doc(DOC_TEXT.replace("step one", f"step {i}"), f"file:///docs/guide-{i}.md"))
    assert 0 < bounded._memo_chars <= 2_000 or len(bounded._memo) == 1
    assert bounded._memo_chars == sum(len(text) for chunks in bounded._memo.values() for text, _ in chunks)


@pytest.mark.parametrize(
    ("heading", "seen"),
    [
        ("CORS { #cors-cross-origin-resource-sharing }", "CORS"),
        ("Path parameters {#path .params}", "Path parameters"),
        ("Title {data-level=2}", "Title"),
        ("Use `pip` **now**", "Use pip now"),
        ("A [link](https://example.org) and ![logo](logo.png)", "A link and logo"),
        ("<small>Tip</small>   here", "Tip here"),
        (r"Escaped \_under\_ and \*star\*", "Escaped _under_ and *star*"),
        ("snake_case_name and 2 * 3 * 4", "snake_case_name and 2 * 3 * 4"),
        ("Dict {a: b} stays", "Dict {a: b} stays"),
        ("{ #only-an-anchor }", "{ #only-an-anchor }"),
    ],
)
def test_clean_heading(heading: str, seen: str) -> None:
    from rag_platform.chunking import clean_heading

    assert clean_heading(heading) == seen


def test_heading_anchors_do_not_reach_chunk_texts() -> None:
    """Regression: a docs site adding `{ #anchor }` to its headings changed every chunk's text (98.7% of one
    real step re-embedded); the heading path a chunk starts with is what a reader sees."""
    plain = "# CORS\n\nIntro.\n\n## Use CORSMiddleware\n\nAdd the middleware.\n"
    anchored = "# CORS { #cors }\n\nIntro.\n\n## Use `CORSMiddleware` { #use-corsmiddleware }\n\nAdd the middleware.\n"
    assert split_sections(anchored, "CORS { #cors }") == split_sections(plain, "CORS")
    assert split_sections(anchored, "CORS")[-1].heading_path == ("CORS", "Use CORSMiddleware")
