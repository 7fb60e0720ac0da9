"""The peer the refresh benchmarks measure against: a plain LangChain indexing script.

It loads every ``*.md`` file, splits it (RecursiveCharacterTextSplitter), and lets ``index(..., cleanup="full")``
skip what its record manager already holds, writing to an InMemoryVectorStore. It embeds with the platform's
own default embedder (the same ONNX export), so the model costs the same on both sides.

Two ways to run it, as a user would:
- warm: ``LangChainScript(folder).step()`` in a long-lived process (store and records in memory);
- cold: ``python benchmarks/langchain_peer.py STATE_DIR FOLDER`` per step: a fresh process that loads the store
  and the record manager's records from STATE_DIR, indexes, saves them back and prints the result as JSON.

Needs ``pip install langchain-core langchain-text-splitters`` (``langchain_available()`` says whether it is there).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

STORE_FILE = "store.json"
RECORDS_FILE = "records.json"


def langchain_available() -> bool:
    try:
        import langchain_core.indexing  # noqa: F401
        import langchain_text_splitters  # noqa: F401
    except ImportError:
        return False
    return True


def platform_embeddings(export_dir: Path | None = None) -> Any:
    """The platform's default embedder behind LangChain's ``Embeddings`` interface."""
    from langchain_core.embeddings import Embeddings

    from rag_platform.config import EmbeddingSettings
    from rag_platform.embedding import make_embedder

    embedder = make_embedder(EmbeddingSettings(), export_dir)

    class Same(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [list(map(float, v)) for v in embedder.embed(texts)]

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    return Same()


class LangChainScript:
    """The plain LangChain way: re-load every file, split, and let ``index`` skip what its record manager has."""

    def __init__(self, folder: Path, state: Path | None = None, export_dir: Path | None = None):
        from langchain_core.indexing import InMemoryRecordManager
        from langchain_core.vectorstores import InMemoryVectorStore
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        self.folder = folder
        self.state = state
        self.splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100)
        embeddings = platform_embeddings(export_dir)
        self.records = InMemoryRecordManager("bench")
        self.records.create_schema()
        if state is not None and (state / STORE_FILE).exists():
            self.store = InMemoryVectorStore.load(str(state / STORE_FILE), embeddings)
            self.records.records = json.loads((state / RECORDS_FILE).read_text(encoding="utf-8"))
        else:
            self.store = InMemoryVectorStore(embeddings)

    def step(self) -> dict[str, Any]:
        from langchain_core.documents import Document
        from langchain_core.indexing import index

        started = time.perf_counter()
        docs = [
            Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": str(p)})
            for p in sorted(self.folder.rglob("*.md"))
        ]
        chunks = self.splitter.split_documents(docs)
        result = index(chunks, self.records, self.store, cleanup="full", source_id_key="source")
        if self.state is not None:
            self.state.mkdir(parents=True, exist_ok=True)
            self.store.dump(str(self.state / STORE_FILE))
            (self.state / RECORDS_FILE).write_text(json.dumps(self.records.records), encoding="utf-8")
        return {"seconds": round(time.perf_counter() - started, 3), **{k: int(v) for k, v in result.items()}}


if __name__ == "__main__":
    state_dir, source = Path(sys.argv[1]), Path(sys.argv[2])
    export = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    print(json.dumps(LangChainScript(source, state_dir, export).step()))
