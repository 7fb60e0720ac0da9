"""rag-platform: keeps RAG search indexes continuously fresh."""

__version__ = "0.1.0"
