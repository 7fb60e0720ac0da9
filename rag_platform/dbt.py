"""Locate the packaged dbt project and keep its manifest parsed under the platform home.

The manifest is built once per version of the project files (a hash of them names the folder), never at
import time, and never inside the installed package, which may be read-only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def ensure_manifest(home: str | Path) -> Path:
    """Path to ``manifest.json`` for the current project files, running ``dbt parse`` when missing."""
    project_dir = dbt_project_dir()
    # A prebuilt manifest (the Docker image parses at build time) wins over the home's own.
    base = Path(os.environ.get("RAG_PLATFORM_DBT_TARGET") or Path(home) / "dbt")
    target = base / f"manifest-{project_hash(project_dir)}"
    manifest = target / "manifest.json"
    if manifest.is_file():
        return manifest
    target.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DBT_TARGET_PATH": str(target),
        "DBT_LOG_PATH": str(target),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "RAG_PLATFORM_WAREHOUSE": str(Path(home) / "warehouse.duckdb"),
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
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not manifest.is_file():
        detail = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no output"]
        raise DbtError(f"dbt parse failed: {detail[0]}")
    return manifest


if __name__ == "__main__":
    from rag_platform.config import platform_home

    print(ensure_manifest(platform_home()))
