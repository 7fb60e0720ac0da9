"""Source folders: find documents, hash them, read them into parsed documents or quarantine records."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from rag_platform.parsing import UnreadableDocument, mime_for, parse_document
from rag_platform.quality import document_problem
from rag_platform.records import ParsedDocument, QuarantineCode, Quarantined, SourceFile, sha256_hex, stable_hash


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
    """Every file with a supported suffix under ``root``, in a stable order (a folder's files, then its
    sub-folders, by name); hidden entries and symlinked folders are skipped. Special files and symlinked
    files are listed too, so that reading refuses them into quarantine rather than skipping them silently.

    Iterative (an explicit stack of folders): folders nested thousands deep are walked, not a RecursionError.
    """
    source = str(root)
    folders = [str(root)]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError:
            continue  # a folder that vanished or cannot be listed holds no documents we can see
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_folder = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_folder = False
            if is_folder:
                subfolders.append(entry.path)
                continue
            if mime_for(entry.name) is None:
                continue
            try:
                info: os.stat_result | None = os.stat(entry.path)  # size and mtime only: never opens the file
            except OSError:
                info = None
            yield SourceFile(
                uri=Path(entry.path).as_uri(),  # percent-encodes the name's bytes: lossless even when not UTF-8
                path=entry.path,
                source=source,
                size_bytes=info.st_size if info else -1,
                modified_at=info.st_mtime if info else 0.0,
            )
        folders.extend(reversed(subfolders))


class Refused(Exception):
    """A source file that is not opened or not read, with its quarantine code and reason."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def read_source_bytes(file: SourceFile, max_bytes: int) -> bytes:
    """The bytes of a source file, read only when it is safe to: raises ``Refused`` otherwise.

    Only a regular file whose resolved path lies inside its source root is opened (a symlink out of the root,
    a FIFO, a device or a socket is refused from its metadata, never opened), with ``O_NOFOLLOW | O_NONBLOCK``
    so a file swapped for a link or a FIFO after the check is neither followed nor waited on, and at most
    ``max_bytes + 1`` bytes are read, so no file (``/dev/zero``, a 4 GB sparse file) can exhaust memory. As
    root, a file its owner cannot read (mode 000) is refused as the service user would be refused.
    """
    try:
        file.path.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(QuarantineCode.BAD_FILENAME, "the file name is not valid UTF-8; rename the file") from None
    root = os.path.realpath(file.source)
    real = os.path.realpath(file.path)
    if not _inside(real, root):
        raise Refused(QuarantineCode.OUTSIDE_SOURCE, "resolves outside its source folder (a symlink out of it)")
    try:
        info = os.stat(real)
    except OSError as exc:
        raise Refused(QuarantineCode.UNREADABLE, f"unreadable: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise Refused(QuarantineCode.NOT_REGULAR_FILE, f"not a regular file ({_kind(info.st_mode)})")
    if info.st_size > max_bytes:
        raise Refused(QuarantineCode.TOO_LARGE, f"file is {info.st_size} bytes, over the limit of {max_bytes}")
    if os.geteuid() == 0 and not info.st_mode & stat.S_IRUSR:
        raise Refused(QuarantineCode.UNREADABLE, "unreadable: its owner has no read permission")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise Refused(QuarantineCode.UNREADABLE, f"unreadable: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between the check and the open
            raise Refused(QuarantineCode.NOT_REGULAR_FILE, "not a regular file (replaced while being read)")
        parts, size = [], 0
        while size <= max_bytes:
            part = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not part:
                break
            parts.append(part)
            size += len(part)
    except OSError as exc:
        raise Refused(QuarantineCode.UNREADABLE, f"unreadable: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > max_bytes:
        raise Refused(QuarantineCode.TOO_LARGE, f"file grew over the limit of {max_bytes} bytes while being read")
    return b"".join(parts)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device")):
        if test(mode):
            return name
    return "block device" if stat.S_ISBLK(mode) else "special file"


@dataclass(frozen=True, slots=True)
class ReadResult:
    file: SourceFile
    document_version: str | None
    document: ParsedDocument | None
    quarantined: Quarantined | None


def read_file(file: SourceFile, max_bytes: int) -> ReadResult:
    """Read and parse one file; every failure of any kind becomes a quarantine record with a code and a reason,
    never an exception: one file cannot fail a run."""

    def quarantine(code: str, reason: str, version: str | None) -> ReadResult:
        return ReadResult(file, version, None, Quarantined(file.uri, file.source, reason, version, code))

    try:
        data = read_source_bytes(file, max_bytes)
    except Refused as exc:
        return quarantine(exc.code, exc.reason, None)
    version = sha256_hex(data)
    try:
        title, text, mime = parse_document(data, file.path)
    except UnreadableDocument as exc:
        return quarantine(exc.code, str(exc), version)
    except Exception as exc:  # a parser bug or limit on this one file (e.g. RecursionError): quarantine it
        return quarantine(QuarantineCode.UNPARSEABLE, f"could not be parsed: {type(exc).__name__}", version)
    problem = document_problem(text)
    if problem is not None:
        return quarantine(*problem, version)
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


def content_key(file: SourceFile, max_bytes: int) -> str:
    """The sha256 of a file's bytes, for change detection; a file that reading refuses (same rules as
    ``read_source_bytes``: nothing outside the root, no special file, bounded) gets a marker of its code,
    size and mtime instead, so it changes the fingerprint only when it changes (a link out of the root: only
    its code, so nothing outside the root shows through, not even a size)."""
    try:
        return sha256_hex(read_source_bytes(file, max_bytes))
    except Refused as exc:
        outside = exc.code == QuarantineCode.OUTSIDE_SOURCE
        return f"refused:{exc.code}" + ("" if outside else f":{file.size_bytes}:{file.modified_at}")


def hash_sources(roots: Iterable[Path], max_bytes: int) -> dict[str, str]:
    """``uri -> content_key`` of every supported file under ``roots``."""
    return {file.uri: content_key(file, max_bytes) for root in roots if root.is_dir() for file in scan_source(root)}


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
