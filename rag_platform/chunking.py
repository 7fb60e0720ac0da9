"""Structure-aware chunking bounded by the embedding model's own tokenizer.

A document is split into sections at Markdown headings; each section's blocks (paragraphs, lists, code
blocks, tables) are packed greedily into chunks of at most ``max_tokens`` tokens. A block too long for one
chunk is split at lines, then sentences, then words: never inside a word. Each chunk starts with its heading
path (``Title > Section > Subsection``) as context. Consecutive chunks of one section share up to
``overlap`` tokens of whole pieces. The same document and config always give the same chunks and ids.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from rag_platform.records import Chunk, ParsedDocument, chunk_id, document_id, stable_hash

if TYPE_CHECKING:
    from rag_platform.config import Settings

# v2: headings are cleaned of attribute lists and inline markup (chunk texts change, so do their ids).
CHUNKER_VERSION = "markdown-sections-v2"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_SEPARATORS: tuple[str, ...] = ("\n", "sentence", " ")

TokenCounter = Callable[[Sequence[str]], list[int]]
# Characters of chunk text a chunker keeps for the sections it chunked last (about 30 MB of memory at most).
SECTION_MEMO_CHARS = 16_000_000

# Markup a reader never sees in a heading, most specific first: a trailing attribute list (MkDocs/Pandoc
# ``{ #id .class key=value }``), images and links (their text stays), inline code, emphasis, HTML tags and
# Markdown backslash escapes.
_HEADING_MARKUP: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\{\s*(?:[#.][^{}]*|-|[\w-]+=[^{}]*)\}\s*$"), ""),  # no leading \s*: quadratic on long runs
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),
    (re.compile(r"`([^`]+)`"), r"\1"),
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),
    (re.compile(r"</?[A-Za-z][^<>]*>"), ""),
)
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!<>|])")
_PRIVATE = 0xE000  # escaped characters are parked in the private-use area while the markup is removed


def clean_heading(text: str) -> str:
    """A heading or title as a reader sees it: ``CORS { #cors-cross-origin-resource-sharing }`` -> ``CORS``,
    ``Use `pip` **now**`` -> ``Use pip now``. Whitespace collapses; a heading that is only markup stays as is."""
    park = not re.search(r"[\uE000-\uE07F]", text)  # the area must be free to hold escapes
    cleaned = _ESCAPED.sub(lambda m: chr(_PRIVATE + ord(m.group(1))), text) if park else text
    for pattern, replacement in _HEADING_MARKUP:
        cleaned = pattern.sub(replacement, cleaned)
    if park:
        cleaned = re.sub(r"[\uE000-\uE07F]", lambda m: chr(ord(m.group(0)) - _PRIVATE), cleaned)
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    return cleaned or re.sub(r"\s+", " ", text).strip()


@dataclass(frozen=True, slots=True)
class ChunkerConfig:
    max_tokens: int
    overlap: int
    tokenizer: str

    @property
    def fingerprint(self) -> str:
        """Names everything that changes chunk boundaries; part of chunk ids and index versions."""
        return stable_hash(
            {"v": CHUNKER_VERSION, "max": self.max_tokens, "overlap": self.overlap, "tok": self.tokenizer}, 16
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ChunkerConfig:
        """Chunks are bounded in the embedding model's own tokens."""
        return cls(settings.chunker.max_tokens, settings.chunker.overlap, settings.embedding.model)

    def describe(self) -> dict[str, object]:
        return {
            "version": CHUNKER_VERSION,
            "max_tokens": self.max_tokens,
            "overlap": self.overlap,
            "tokenizer": self.tokenizer,
            "fingerprint": self.fingerprint,
        }


class HFTokenCounter:
    """Counts tokens with the model's fast tokenizer (``tokenizer.json``), without special tokens."""

    def __init__(self, model: str):
        self.model = model
        self._lock = threading.Lock()

    @cached_property
    def _tokenizer(self):  # type: ignore[no-untyped-def]
        from tokenizers import Tokenizer

        from rag_platform.embedding import EmbeddingError, tokenizer_file

        path = tokenizer_file(self.model)
        if path is None:
            raise EmbeddingError(f"model {self.model!r} has no tokenizer.json; cannot count tokens")
        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    def __call__(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._lock:
            encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]


@dataclass(frozen=True, slots=True)
class Section:
    heading_path: tuple[str, ...]
    blocks: tuple[str, ...]


def split_sections(text: str, title: str) -> list[Section]:
    """Markdown -> sections keyed by heading path; each block keeps its source lines verbatim."""
    from markdown_it import MarkdownIt

    lines = text.splitlines()
    title = clean_heading(title)
    # Block structure only: inline parsing (links, emphasis) would cost a third of the time and change nothing
    # here, since headings are read from their raw inline content and blocks from their source lines.
    tokens = MarkdownIt("commonmark").enable("table").disable("inline").parse(text)
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    blocks: list[str] = []
    headings: list[str] = []

    def flush() -> None:
        if blocks:
            sections.append(Section(_heading_path(stack, title), tuple(blocks)))
            blocks.clear()

    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.level == 0 and token.type == "heading_open":
            flush()
            level = int(token.tag[1])
            heading = clean_heading(tokens[i + 1].content)
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
            headings.append(heading)
            i += 3
            continue
        if token.level == 0 and token.map is not None and token.nesting >= 0 and token.type != "heading_close":
            start, end = token.map
            block = "\n".join(lines[start:end]).strip()
            if block:
                blocks.append(block)
        i += 1
    flush()
    if not sections and any(headings):
        # A document of headings only (an outline): its headings are its text.
        sections.append(Section((title,), ("\n".join(h for h in headings if h),)))
    return sections


def _heading_path(stack: list[tuple[int, str]], title: str) -> tuple[str, ...]:
    path = [h for _, h in stack if h]
    if not path or path[0] != title:
        path.insert(0, title)
    return tuple(path)


def _split_piece(piece: str, how: str) -> list[str]:
    if how == "sentence":
        parts = _SENTENCE_END.split(piece)
    elif how == "\n":
        parts = piece.split("\n")
    else:
        parts = piece.split()
    return [p for p in (part.strip() for part in parts) if p]


@dataclass(frozen=True, slots=True)
class _Unit:
    """A piece of a section that fits the budget; ``joiner`` is what separated it from the piece before."""

    text: str
    tokens: int
    joiner: str


def _fit_pieces(
    pieces: list[str], budget: int, count: TokenCounter, level: int = 0, joiner: str = "\n\n"
) -> list[_Unit]:
    """Split pieces until each fits the budget; a single word longer than the budget is cut by characters."""
    fitted: list[_Unit] = []
    for piece, n in zip(pieces, count(pieces), strict=True):
        if n <= budget:
            fitted.append(_Unit(piece, n, joiner))
            continue
        if level < len(_SEPARATORS):
            separator = _SEPARATORS[level]
            parts = _split_piece(piece, separator)
            inner = "\n" if separator == "\n" else " "
            sub = _fit_pieces(parts if len(parts) > 1 else [piece], budget, count, level + 1, inner)
        else:
            width = max(1, len(piece) * budget // max(n, 1))
            parts = [piece[i : i + width] for i in range(0, len(piece), width)]
            sub = [_Unit(p, c, "") for p, c in zip(parts, count(parts), strict=True)]
        if sub:
            sub[0] = _Unit(sub[0].text, sub[0].tokens, joiner)
        fitted.extend(sub)
    return fitted


def _pack(units: list[_Unit], budget: int, overlap: int) -> list[str]:
    """Greedy packing of whole units; the next chunk repeats trailing units worth <= overlap tokens."""
    chunks: list[str] = []
    start = 0
    while start < len(units):
        end, used = start, 0
        while end < len(units) and (end == start or used + units[end].tokens <= budget):
            used += units[end].tokens
            end += 1
        chunks.append(units[start].text + "".join(u.joiner + u.text for u in units[start + 1 : end]))
        if end >= len(units):
            break
        next_start, carried = end, 0
        while next_start - 1 > start and carried + units[next_start - 1].tokens <= overlap:
            next_start -= 1
            carried += units[next_start].tokens
        start = next_start
    return chunks


_worker_chunker: Chunker | None = None


def _start_worker(config: ChunkerConfig) -> None:
    global _worker_chunker
    _worker_chunker = Chunker(config)


def _chunk_in_worker(doc: ParsedDocument) -> list[Chunk]:
    assert _worker_chunker is not None
    return _worker_chunker.chunk(doc)


class Chunker:
    def __init__(self, config: ChunkerConfig, count_tokens: TokenCounter | None = None):
        self.config = config
        self.count_tokens = count_tokens or HFTokenCounter(config.tokenizer)
        self._pool: Executor | None = None
        self._memo: OrderedDict[bytes, tuple[tuple[str, int], ...]] = OrderedDict()
        self._memo_chars = 0
        self._memo_lock = threading.Lock()

    @contextmanager
    def parallel(self, workers: int) -> Iterator[None]:
        """Within the block, ``chunk_many`` spreads documents over ``workers`` processes (spawned, not forked:
        the caller may run threads). Only the model's own token counter can travel to them; with another
        counter, or one worker, chunking stays in this process."""
        if workers <= 1 or not isinstance(self.count_tokens, HFTokenCounter):
            yield
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, spawn, initializer=_start_worker, initargs=(self.config,)) as pool:
            self._pool = pool
            try:
                yield
            finally:
                self._pool = None

    def chunk_many(self, docs: Sequence[ParsedDocument]) -> list[list[Chunk]]:
        """Chunks of each document, in order; on worker processes inside ``parallel``."""
        if self._pool is None or len(docs) < 2:
            return [self.chunk(doc) for doc in docs]
        return list(self._pool.map(_chunk_in_worker, docs, chunksize=max(1, len(docs) // 32)))

    def _section_chunks(self, section: Section) -> tuple[tuple[str, int], ...]:
        """The chunk texts of one section with their token counts; remembered for the sections chunked last,
        so re-chunking a long document after a small edit only does the sections that changed."""
        key = hashlib.blake2b(repr((section.heading_path, section.blocks)).encode(), digest_size=16).digest()
        with self._memo_lock:
            if (hit := self._memo.get(key)) is not None:
                self._memo.move_to_end(key)
                return hit
        context = " > ".join(section.heading_path)
        context_tokens = self.count_tokens([context])[0] + 1
        budget = max(8, self.config.max_tokens - context_tokens)
        units = _fit_pieces(list(section.blocks), budget, self.count_tokens)
        texts = [f"{context}\n\n{body}" for body in _pack(units, budget, self.config.overlap)]
        chunks = tuple(zip(texts, self.count_tokens(texts), strict=True))
        with self._memo_lock:
            self._memo[key] = chunks
            self._memo_chars += sum(len(text) for text, _ in chunks)
            while self._memo_chars > SECTION_MEMO_CHARS and len(self._memo) > 1:
                _, dropped = self._memo.popitem(last=False)
                self._memo_chars -= sum(len(text) for text, _ in dropped)
        return chunks

    def chunk(self, doc: ParsedDocument) -> list[Chunk]:
        raw: list[tuple[str, str, int]] = []
        for section in split_sections(doc.text, doc.title):
            context = " > ".join(section.heading_path)
            raw.extend((context, text, n) for text, n in self._section_chunks(section))
        seen: dict[str, int] = {}
        chunks = []
        fingerprint = self.config.fingerprint
        for ordinal, (context, text, n) in enumerate(raw):
            occurrence = seen.get(text, 0)
            seen[text] = occurrence + 1
            chunks.append(
                Chunk(
                    chunk_id=chunk_id(doc.uri, text, fingerprint, occurrence),
                    document_id=document_id(doc.uri),
                    uri=doc.uri,
                    document_version=doc.document_version,
                    ordinal=ordinal,
                    title=doc.title,
                    heading_path=context,
                    text=text,
                    token_count=n,
                )
            )
        return chunks


@lru_cache(maxsize=4)
def cached_chunker(config: ChunkerConfig) -> Chunker:
    """One chunker (and tokenizer) per process and configuration."""
    return Chunker(config)
