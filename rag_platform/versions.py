"""Index versions: list them with their fingerprints and counts, and roll the alias back to an earlier one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_platform import warehouse
from rag_platform.backends import make_backend
from rag_platform.config import clear_published_model, load_settings, write_published_model
from rag_platform.index_plan import mark_served
from rag_platform.ingest import now
from rag_platform.locking import refresh_lock
from rag_platform.warehouse import first_row, rows_as_dicts

if TYPE_CHECKING:
    from rag_platform.config import Settings


class VersionError(ValueError):
    """The requested version does not exist or cannot be served."""


def list_versions(settings: Settings) -> list[dict[str, Any]]:
    """Every kept version, newest first, with the backend's own count and whether it is served."""
    backend = make_backend(settings)
    served = backend.resolve_alias(settings.index.alias)
    with warehouse.reader(settings) as con:
        rows = (
            rows_as_dicts(
                con,
                """SELECT name, fingerprint, build, chunker_config, model_id, dim, status, created_at, created_run,
                      published_at FROM index_versions WHERE alias = ? AND status != 'dropped' ORDER BY build DESC""",
                [settings.index.alias],
            )
            if con
            else []
        )
    versions = []
    for row in rows:
        versions.append(
            {
                "version": row["name"],
                "served": row["name"] == served,
                "status": row["status"],
                "fingerprint": row["fingerprint"],
                "chunker": json.loads(row["chunker_config"] or "{}"),
                "embedding_model": row["model_id"],
                "count": backend.count(row["name"]),
                "created_at": str(row["created_at"]),
                "created_run": row["created_run"],
                "published_at": str(row["published_at"]) if row["published_at"] else None,
            }
        )
    return versions


def serve_model_of(settings: Settings, model_id: str) -> None:
    """Queries follow the model of the version now served: the configured one, or a fine-tuned one."""
    model = model_id.rsplit("@", 1)[0]
    configured = load_settings(settings.home, published=False).embedding.model
    if model == configured:
        clear_published_model(settings.home)
    elif Path(model).is_dir():
        write_published_model(settings.home, configured, model, Path(model).name)


def rollback(settings: Settings, version: str) -> dict[str, Any]:
    """Point the alias at ``version`` (a kept, fully built version); the previous one stays kept."""
    backend = make_backend(settings)
    alias = settings.index.alias
    with refresh_lock(settings.lock_path), warehouse.writer(settings) as con:
        row = first_row(
            con, "SELECT status, model_id FROM index_versions WHERE name = ? AND alias = ?", [version, alias]
        )
        if row is None or row[0] == "dropped":
            raise VersionError(f"unknown index version {version!r}; see rag-platform index list")
        if row[0] == "building":
            raise VersionError(f"index version {version!r} was never completed and cannot be served")
        previous = backend.resolve_alias(alias)
        backend.swap_alias(alias, version)
        mark_served(con, alias, version)
        con.execute("INSERT INTO alias_events VALUES (?, ?, ?, NULL, ?, 'rollback')", [alias, version, previous, now()])
        serve_model_of(settings, str(row[1] or ""))
    warehouse.export_snapshot(settings)
    return {"alias": alias, "served": version, "previous": previous, "count": backend.count(version)}
