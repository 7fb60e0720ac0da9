"""What changed in the sources, cheaply enough to ask every few seconds.

The sensor compares the files on disk with the document versions the warehouse holds (its read snapshot), so
it never asks for a run that has nothing to do: not for an unchanged corpus, not for a change a CLI refresh
already took. Files are hashed only when their metadata (size, mtime, inode) differs from the last time they
were hashed; the stat cache that remembers those hashes is a small JSON file under the platform home.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from rag_platform import warehouse
from rag_platform.sources import SourceChanges, content_key, corpus_fingerprint, scan_source, source_changes

if TYPE_CHECKING:
    from rag_platform.config import Settings

# A file modified this recently may be written again within the same mtime tick, unseen by its metadata
# ("racily clean", as git calls it): its hash is used but not remembered, so the next scan hashes it again.
RACY_WINDOW_S = 2.0
CACHE_FILE = "source_stat_cache.json"

StatKey = tuple[int, int, int]  # size, mtime in ns, inode


def stat_key(path: str) -> StatKey | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


class StatCache:
    """``uri -> (size, mtime_ns, inode, content key)`` of files hashed before. Losing it costs one full hash
    of the corpus, never a wrong answer: an entry is used only while all three metadata values match."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, tuple[StatKey, str]] = {}
        self.dirty = False
        if path is not None and path.is_file():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                self.entries = {uri: ((e[0], e[1], e[2]), e[3]) for uri, e in raw.items()}
            except (OSError, ValueError, TypeError, IndexError):
                self.entries = {}  # a damaged cache is rebuilt by hashing

    def lookup(self, uri: str, key: StatKey) -> str | None:
        entry = self.entries.get(uri)
        return entry[1] if entry is not None and entry[0] == key else None

    def remember(self, uri: str, key: StatKey, content: str) -> None:
        self.entries[uri] = (key, content)
        self.dirty = True

    def retain(self, uris: Iterable[str]) -> None:
        """Forget files that are gone."""
        keep = set(uris)
        if len(keep) != len(self.entries) or not keep.issuperset(self.entries):
            self.entries = {uri: e for uri, e in self.entries.items() if uri in keep}
            self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        data = {uri: [*key, content] for uri, (key, content) in self.entries.items()}
        tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, self.path)
        self.dirty = False


@dataclass(frozen=True, slots=True)
class ScanResult:
    versions: dict[str, str]  # uri -> content key, as hash_sources gives it
    hashed: int  # files whose bytes were read this scan


def hash_sources_cached(roots: Iterable[Path], max_bytes: int, cache: StatCache) -> ScanResult:
    """``uri -> content key`` for every supported file under ``roots`` (``sources.scan_source`` decides which,
    ``sources.content_key`` reads them safely), reading only files whose size, mtime or inode changed since the
    cache last saw them."""
    versions: dict[str, str] = {}
    hashed = 0
    racy_after = (time.time() - RACY_WINDOW_S) * 1e9
    for root in roots:
        if not root.is_dir():
            continue
        for file in scan_source(root):
            key = stat_key(file.path)
            cached = cache.lookup(file.uri, key) if key is not None else None
            if cached is not None:
                versions[file.uri] = cached
                continue
            content = content_key(file, max_bytes)
            hashed += 1
            versions[file.uri] = content
            if key is not None and key[1] < racy_after:
                cache.remember(file.uri, key, content)
    cache.retain(versions)
    return ScanResult(versions, hashed)


WarehouseDocuments = tuple[list[Path], dict[str, str | None]]
# The last answer per snapshot file, with the file's metadata: each refresh swaps in a new file (a new inode), so
# a watcher asking again while nothing was refreshed reads no database. Treat what it returns as read-only.
_documents_seen: dict[Path, tuple[StatKey, WarehouseDocuments]] = {}


def warehouse_documents(settings: Settings) -> WarehouseDocuments | None:
    """Registered source folders and ``uri -> version`` of every live or quarantined document, from the read
    snapshot (never the warehouse itself); None before the first snapshot."""
    snapshot = settings.snapshot_path
    key = stat_key(str(snapshot))
    seen = _documents_seen.get(snapshot)
    if key is not None and seen is not None and seen[0] == key:
        return seen[1]
    with warehouse.reader(settings) as con:
        if con is None:
            return None
        folders = [Path(r[0]) for r in con.execute("SELECT path FROM sources ORDER BY path").fetchall()]
        rows = con.execute(
            """SELECT uri, document_version FROM (
                   SELECT uri, document_version, is_deleted FROM document_versions
                   QUALIFY row_number() OVER (PARTITION BY uri ORDER BY ingested_at DESC) = 1
               ) WHERE NOT is_deleted
               UNION ALL SELECT uri, document_version FROM quarantine"""
        ).fetchall()
    state = folders, dict(rows)
    if key is not None and stat_key(str(snapshot)) == key:  # not swapped while this read ran
        _documents_seen.clear()  # one home per process in practice: keep the memory flat
        _documents_seen[snapshot] = key, state
    return state


@dataclass(frozen=True, slots=True)
class PendingChanges:
    """The sources as they are on disk, against what the warehouse holds."""

    folders: tuple[Path, ...]
    files: int
    hashed: int
    fingerprint: str  # of the corpus on disk: sorted (uri, content key) pairs
    changes: SourceChanges

    @property
    def empty(self) -> bool:
        return not any(self.changes.counts().values())


# The stat cache this process last loaded or saved, with the file's metadata then: a watcher asking every few
# seconds parses the file again only when another process (the sensor's, a run's) saved it meanwhile.
_stat_caches: dict[Path, tuple[StatKey | None, StatCache]] = {}


def _stat_cache(path: Path) -> StatCache:
    key = stat_key(str(path))
    held = _stat_caches.get(path)
    if held is not None and held[0] == key:
        return held[1]
    cache = StatCache(path)
    _stat_caches.clear()
    _stat_caches[path] = key, cache
    return cache


def pending_changes(settings: Settings, known: Mapping[str, str | None], folders: Iterable[Path]) -> PendingChanges:
    """Scan ``folders`` (with the home's stat cache) and compare them with ``known`` (``uri -> version``)."""
    roots = tuple(folders)
    path = settings.cache_dir / CACHE_FILE
    cache = _stat_cache(path)
    scan = hash_sources_cached(roots, settings.source.max_bytes, cache)
    with contextlib.suppress(OSError):  # a read-only home only costs hashing again next time
        if cache.dirty:
            cache.save()
            _stat_caches[path] = stat_key(str(path)), cache
    return PendingChanges(
        folders=roots,
        files=len(scan.versions),
        hashed=scan.hashed,
        fingerprint=corpus_fingerprint(scan.versions.items()),
        changes=source_changes(scan.versions, known),
    )


def oldest_pending_change_s(pending: PendingChanges, now: float | None = None) -> float:
    """Age in seconds of the oldest change the warehouse does not hold yet (0 when none). Added and modified
    files count from their mtime; a deletion or a move has no time of its own and counts from ``now``."""
    if pending.empty:
        return 0.0
    now = time.time() if now is None else now
    oldest = now
    for uri in (*pending.changes.added, *pending.changes.modified):
        with contextlib.suppress(OSError, ValueError):
            oldest = min(oldest, os.stat(unquote(urlparse(uri).path)).st_mtime)
    return max(0.0, now - oldest)


# A `ui` or `demo` process that watches the sources and refreshes on its own touches this file every poll; the
# sensor leaves recent changes to it while the file is fresh.
WATCHER_FILE = "watcher.alive"
WATCHER_FRESH_S = 5.0
WATCHER_GRACE_S = 30.0


def beat_watcher(settings: Settings) -> None:
    path = settings.home / WATCHER_FILE
    with contextlib.suppress(OSError):
        try:
            os.utime(path)  # only the mtime is read
        except FileNotFoundError:
            path.write_text(f"{os.getpid()}\n", encoding="utf-8")


def stop_watcher(settings: Settings) -> None:
    with contextlib.suppress(OSError):
        (settings.home / WATCHER_FILE).unlink()


def watcher_takes(settings: Settings, pending: PendingChanges, now: float | None = None) -> bool:
    """Whether a live watcher will take ``pending`` itself: it beat within ``WATCHER_FRESH_S`` and the oldest
    change is younger than ``WATCHER_GRACE_S`` (an older one means the watcher missed it: the sensor runs)."""
    now = time.time() if now is None else now
    try:
        beat = (settings.home / WATCHER_FILE).stat().st_mtime
    except OSError:
        return False
    return now - beat <= WATCHER_FRESH_S and oldest_pending_change_s(pending, now) < WATCHER_GRACE_S
