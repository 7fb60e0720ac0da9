"""Environment shared by the tests and the subprocesses they start."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# ONNX exports of the model are made once per test session and shared by every platform home the tests create
# (each home would otherwise export and quantize again). Subprocess helpers pass this variable through.
EXPORT_ENV = "RAG_PLATFORM__EMBEDDING__EXPORT_DIR"
if EXPORT_ENV not in os.environ:
    os.environ[EXPORT_ENV] = tempfile.mkdtemp(prefix="rag-test-exports-")
    atexit.register(shutil.rmtree, os.environ[EXPORT_ENV], True)


def inherited_environment() -> dict[str, str]:
    """This process's environment without platform settings, except the shared export folder."""
    return {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith("RAG_PLATFORM") or k == EXPORT_ENV) and k != "DAGSTER_HOME"
    }
