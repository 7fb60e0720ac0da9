"""The single Dagster ``Definitions`` of rag-platform, loaded by ``workspace.yaml``, the CLI and the UI.

Importing it writes nothing and runs nothing: see ``rag_platform.defs.project``."""

from rag_platform.defs.project import build_definitions

__all__ = ["build_definitions", "defs"]

defs = build_definitions()
