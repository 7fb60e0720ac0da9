"""Locate the packaged dbt project and keep its manifest parsed under the platform home.

The manifest is built once per version of the project files (a hash of them names the folder), never at
import time, and never inside the installed package, which may be read-only.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_platform.records import stable_hash


class DbtError(RuntimeError):
    """dbt could not parse the project."""


def dbt_project_dir() -> Path:
    """The installed ``rag_platform/dbt_project``; in a source checkout, the top-level ``dbt_project/``."""
    packaged = Path(__file__).resolve().parent / "dbt_project"
    if (packaged / "dbt_project.yml").is_file():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "dbt_project"
    if (checkout / "dbt_project.yml").is_file():
        return checkout
    raise DbtError("the dbt project is missing from the installation")


def project_hash(project_dir: Path) -> str:
    files = sorted(p for p in project_dir.rglob("*") if p.is_file() and p.suffix in {".sql", ".yml", ".yaml"})
    return stable_hash([[str(p.relative_to(project_dir)), p.read_text(encoding="utf-8")] for p in files], 16)


def dbt_vars(warehouse_path: Path) -> str:
    """The ``--vars`` of every dbt invocation: the warehouse file (``profiles.yml`` reads it)."""
    return json.dumps({"warehouse": str(warehouse_path)})


def manifest_path(home: str | Path) -> Path:
    """Where the manifest of the current project files lives; a prebuilt one (``RAG_PLATFORM_DBT_TARGET``, the
    Docker image parses at build time) wins over the home's own."""
    project_dir = dbt_project_dir()
    base = Path(os.environ.get("RAG_PLATFORM_DBT_TARGET") or Path(home) / "dbt")
    return base / f"manifest-{project_hash(project_dir)}" / "manifest.json"


def find_manifest(home: str | Path) -> Path:
    """The manifest, which must already exist: loading the definitions never runs dbt."""
    manifest = manifest_path(home)
    if not manifest.is_file():
        raise DbtError(
            f"no dbt manifest for this version of the project under {Path(home) / 'dbt'}; "
            "any rag-platform command prepares it, or run: python -m rag_platform.dbt"
        )
    return manifest


def ensure_manifest(home: str | Path) -> Path:
    """Path to ``manifest.json`` for the current project files, running ``dbt parse`` when missing."""
    project_dir = dbt_project_dir()
    manifest = manifest_path(home)
    if manifest.is_file():
        return manifest
    target = manifest.parent
    target.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DBT_TARGET_PATH": str(target),
        "DBT_LOG_PATH": str(target),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    command = [
        sys.executable,
        "-m",
        "dbt.cli.main",
        "parse",
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(project_dir),
        "--quiet",
        "--vars",
        dbt_vars(Path(home) / "warehouse.duckdb"),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not manifest.is_file():
        detail = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no output"]
        raise DbtError(f"dbt parse failed: {detail[0]}")
    return manifest


# The structured events an in-process build reports per node: what dagster-dbt reads from `dbt --log-format json`.
RESULT_EVENTS = frozenset({"LogSeedResult", "LogModelResult", "LogSnapshotResult", "LogTestResult"})
_IN_PROCESS = threading.Lock()  # dbt keeps its flags and adapters in globals: one invocation at a time


@dataclass(frozen=True, slots=True)
class DbtBuild:
    """An in-process ``dbt build``: whether it succeeded, its per-node result events (dicts shaped like dbt's
    JSON log lines) and, when it failed, dbt's own one-line reason."""

    success: bool
    events: list[dict[str, Any]]
    error: str | None


def build_in_process(warehouse_path: Path, target: Path, select: Sequence[str] = ()) -> DbtBuild:
    """Run ``dbt build`` in this interpreter (dbt's programmatic ``dbtRunner``): no fresh interpreter, no dbt
    import and no project parse per run once a process has run it (partial parsing keeps the parse in
    ``target``). dbt-duckdb closes its warehouse connection when the invocation ends, so the warehouse's
    single-writer rule holds across processes as with the subprocess."""
    from dbt.cli.main import dbtRunner  # 1 s to import: only processes that run dbt pay it
    from dbt_common.events.base_types import EventMsg
    from dbt_common.events.functions import msg_to_dict

    events: list[dict[str, Any]] = []
    errors: list[str] = []

    def collect(msg: EventMsg) -> None:
        if msg.info.name in RESULT_EVENTS:
            events.append(msg_to_dict(msg))
        elif msg.info.level == "error":
            errors.append(str(msg_to_dict(msg)["info"].get("msg") or ""))

    project_dir = str(dbt_project_dir())
    args = ["build", "--project-dir", project_dir, "--profiles-dir", project_dir]
    args += ["--target-path", str(target), "--log-path", str(target), "--vars", dbt_vars(warehouse_path)]
    args += ["--log-level", "none", "--no-send-anonymous-usage-stats", "--no-use-colors"]
    if select:
        args += ["--select", *select]
    with _IN_PROCESS, contextlib.redirect_stdout(sys.stderr):
        try:
            result = dbtRunner(callbacks=[collect]).invoke(args)
        finally:
            _release_warehouse()
    if result.success:
        return DbtBuild(True, events, None)
    reason = str(result.exception) if result.exception is not None else (errors[-1] if errors else "")
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    return DbtBuild(False, events, lines[-1] if lines else "dbt build failed")


def preload_dbt() -> None:
    """Import dbt's runner now (about a second), for a long-lived process whose runs call it later."""
    from dbt.cli.main import dbtRunner

    del dbtRunner


def _release_warehouse() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in this process after an invocation (a subprocess let
    go of it by exiting): until then no other process could write the warehouse, and this one could not open
    it read-only."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    environment = DuckDBConnectionManager._ENV
    if environment is not None:
        environment.close()
    DuckDBConnectionManager.close_all_connections()


if __name__ == "__main__":
    from rag_platform.config import platform_home

    print(ensure_manifest(platform_home()))
