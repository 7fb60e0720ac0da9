"""Source folders: find documents, hash them, read them into parsed documents or quarantine records."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from rag_platform.parsing import UnreadableDocument, mime_for, parse_document
from rag_platform.records import ParsedDocument, Quarantined, SourceFile, sha256_hex, stable_hash


class SourceError(ValueError):
    """A source path that cannot be used (missing, not a folder)."""


def validate_source(path: str | Path) -> Path:
    resolved = Path(path).expanduser().resolve()
    if not resolved.exists():
        raise SourceError(f"source {path} does not exist")
    if not resolved.is_dir():
        raise SourceError(f"source {path} is not a folder")
    return resolved


def scan_source(root: Path) -> Iterator[SourceFile]:
    """Every supported file under ``root``, recursively, in a stable order; hidden files are skipped."""
    source = str(root)
    for dirpath, dirnames, filenames in os.walk(root, onerror=None):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or mime_for(name) is None:
                continue
            path = Path(dirpath) / name
            try:
                stat = path.stat()
            except OSError:
                stat = None
            yield SourceFile(
                uri=path.as_uri(),
                path=str(path),
                source=source,
                size_bytes=stat.st_size if stat else -1,
                modified_at=stat.st_mtime if stat else 0.0,
            )


@dataclass(frozen=True, slots=True)
class ReadResult:
    file: SourceFile
    document_version: str | None
    document: ParsedDocument | None
    quarantined: Quarantined | None


def read_file(file: SourceFile, max_bytes: int) -> ReadResult:
    """Read and parse one file; every failure becomes a quarantine record with its reason."""

    def quarantine(reason: str, version: str | None) -> ReadResult:
        return ReadResult(file, version, None, Quarantined(file.uri, file.source, reason, version))

    if file.size_bytes > max_bytes:
        return quarantine(f"file is {file.size_bytes} bytes, over the limit of {max_bytes}", None)
    try:
        data = Path(file.path).read_bytes()
    except OSError as exc:
        return quarantine(f"unreadable: {exc.strerror or exc}", None)
    version = sha256_hex(data)
    if len(data) > max_bytes:
        return quarantine(f"file is {len(data)} bytes, over the limit of {max_bytes}", version)
    try:
        title, text, mime = parse_document(data, file.path)
    except UnreadableDocument as exc:
        return quarantine(str(exc), version)
    document = ParsedDocument(
        uri=file.uri,
        document_version=version,
        title=title,
        text=text,
        mime=mime,
        metadata={"path": file.path, "size_bytes": len(data), "modified_at": file.modified_at},
    )
    return ReadResult(file, version, document, None)


def file_fingerprint(file: SourceFile) -> str:
    """Cheap change key (path, size, mtime) used to skip re-hashing files that did not change."""
    return stable_hash([file.uri, file.size_bytes, file.modified_at], 24)


def corpus_fingerprint(versions: Iterable[tuple[str, str]]) -> str:
    """A hash of the whole corpus state: sorted (uri, content version) pairs."""
    return stable_hash(sorted(versions), 32)


def hash_sources(roots: Iterable[Path], max_bytes: int) -> dict[str, str]:
    """uri -> sha256 of the bytes (or a size marker for oversized/unreadable files), for change detection."""
    result: dict[str, str] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for file in scan_source(root):
            if file.size_bytes > max_bytes or file.size_bytes < 0:
                result[file.uri] = f"unreadable:{file.size_bytes}:{file.modified_at}"
                continue
            try:
                result[file.uri] = sha256_hex(Path(file.path).read_bytes())
            except OSError as exc:
                result[file.uri] = f"unreadable:{exc.errno}"
    return result


@dataclass(frozen=True, slots=True)
class SourceChanges:
    """What differs between the files on disk and the document versions the warehouse holds, by URI.

    A moved document is a deleted URI whose content reappears under an added URI (its embeddings are reused)."""

    added: tuple[str, ...]
    modified: tuple[str, ...]
    deleted: tuple[str, ...]
    moved: tuple[tuple[str, str], ...]

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in ("added", "modified", "deleted", "moved")}

    def describe(self) -> str:
        return ", ".join(f"{count} {name}" for name, count in self.counts().items())


def source_changes(on_disk: Mapping[str, str], known: Mapping[str, str | None]) -> SourceChanges:
    """Compare ``uri -> content hash`` on disk with ``uri -> version`` known to the warehouse (None: a version
    the warehouse could not hash, e.g. an oversized quarantined file, which then only changes by appearing or
    disappearing)."""
    added = sorted(uri for uri in on_disk if uri not in known)
    deleted = sorted(uri for uri in known if uri not in on_disk)
    modified = sorted(
        uri for uri, version in known.items() if uri in on_disk and version is not None and on_disk[uri] != version
    )
    vanished_by_version = {known[uri]: uri for uri in deleted if known[uri] is not None}
    moved = []
    for uri in added:
        old = vanished_by_version.pop(on_disk[uri], None)  # each vanished URI moves at most once
        if old is not None:
            moved.append((old, uri))
    sources, targets = {old for old, _ in moved}, {new for _, new in moved}
    return SourceChanges(
        added=tuple(uri for uri in added if uri not in targets),
        modified=tuple(modified),
        deleted=tuple(uri for uri in deleted if uri not in sources),
        moved=tuple(moved),
    )
