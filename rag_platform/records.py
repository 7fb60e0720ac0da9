"""Frozen records that flow through the pipeline, and the content-derived ids that name them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def stable_hash(payload: Any, length: int = 64) -> str:
    """sha256 over sorted-key JSON: the same payload always gives the same id."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sha256_hex(text)[:length]


def document_id(uri: str) -> str:
    """A document's id: stable across versions of the same URI."""
    return sha256_hex(uri)[:32]


def chunk_id(uri: str, text: str, chunker_fingerprint: str, occurrence: int = 0) -> str:
    """A chunk's id: hash of (document URI, chunk text, chunker config).

    ``occurrence`` separates identical texts inside one document (the n-th repeat); it is left out of the
    hash for the first occurrence so the id is exactly the documented triple in the common case.
    """
    payload: list[Any] = [uri, text, chunker_fingerprint]
    if occurrence:
        payload.append(occurrence)
    return stable_hash(payload, 32)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file found under a source folder, before parsing."""

    uri: str
    path: str
    source: str
    size_bytes: int
    modified_at: float


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """A readable document: text keeps its structure as Markdown (headings, lists, code blocks)."""

    uri: str
    document_version: str
    title: str
    text: str
    mime: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def document_id(self) -> str:
        return document_id(self.uri)


class QuarantineCode:
    """Stable codes of ``status.quarantined[].code`` (README "Quarantine codes"); ``reason`` says the details."""

    OUTSIDE_SOURCE = "outside_source"
    NOT_REGULAR_FILE = "not_regular_file"
    TOO_LARGE = "too_large"
    EMPTY = "empty"
    BINARY = "binary"
    BAD_ENCODING = "bad_encoding"
    UNREADABLE = "unreadable"
    UNPARSEABLE = "unparseable"
    BAD_FILENAME = "bad_filename"
    NOTHING_TO_SEARCH = "nothing_to_search"


QUARANTINE_CODES = tuple(v for k, v in vars(QuarantineCode).items() if k.isupper())


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A file that could not become a document: a stable ``code`` and a readable ``reason``."""

    uri: str
    source: str
    reason: str
    document_version: str | None
    code: str = QuarantineCode.UNPARSEABLE


@dataclass(frozen=True, slots=True)
class Chunk:
    chunk_id: str
    document_id: str
    uri: str
    document_version: str
    ordinal: int
    title: str
    heading_path: str
    text: str
    token_count: int

    @property
    def text_hash(self) -> str:
        return sha256_hex(self.text)


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    """A chunk as stored in a search index, with its vector and provenance."""

    chunk_id: str
    document_id: str
    source: str
    title: str
    text: str
    document_version: str
    run_id: str
    vector: tuple[float, ...] | list[float]
    heading_path: str = ""


@dataclass(frozen=True, slots=True)
class ChunkMetadata:
    """What a metadata-only index write carries: a chunk's id and the fields of an indexed chunk that can change
    while its id, and so its text and vector, stay the same (the id hashes the URI and the text)."""

    chunk_id: str
    title: str
    heading_path: str
    document_version: str
    run_id: str


METADATA_FIELDS = tuple(f.name for f in fields(ChunkMetadata) if f.name != "chunk_id")


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result from a backend, before or after reranking."""

    chunk_id: str
    document_id: str
    source: str
    title: str
    text: str
    document_version: str
    score: float
    run_id: str = ""
    heading_path: str = ""
