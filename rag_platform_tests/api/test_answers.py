"""POST /answer and `rag-platform ask` over an index built by the real pipeline, through a real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from served_api import Server

from rag_platform.cli import main

pytestmark = pytest.mark.slow
CONTRACT_KEYS = {"question", "answer", "abstained", "reason", "citations", "generator", "index_version", "took_ms"}
CITATION_KEYS = {"n", "chunk_id", "document_id", "source", "title", "quote", "document_version"}


@pytest.fixture(autouse=True)
def _offline_and_answering(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tiny test model's similarities mean nothing: the gate is set per test (0 answers, 1.01 abstains).
    monkeypatch.delenv("COHERE_API_KEY", raising=False)
    monkeypatch.setenv("RAG_PLATFORM__ANSWER__MIN_SIMILARITY", "0")


def assert_grounded(api: httpx.Client, answer: dict) -> None:
    """Contract invariants, checked against the served chunks through the lineage route."""
    assert set(answer) >= CONTRACT_KEYS
    numbers = [c["n"] for c in answer["citations"]]
    assert numbers == list(range(1, len(numbers) + 1))
    for c in answer["citations"]:
        assert set(c) >= CITATION_KEYS and f"[{c['n']}]" in answer["answer"]
        lineage = api.get(f"/chunks/{c['chunk_id']}/lineage").json()
        assert lineage["source"] == c["source"] and lineage["document_version"] == c["document_version"]


def test_answer_route_cites_served_chunks(api: httpx.Client) -> None:
    response = api.post("/answer", json={"question": "What does the Sicilian Defence begin with?", "mode": "keyword"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["abstained"] is False and answer["generator"]["provider"] == "extractive"
    assert answer["index_version"] == api.get("/health").json()["index_version"]
    assert_grounded(api, answer)
    search = api.post("/search", json={"query": answer["question"], "k": 5, "mode": "keyword"}).json()
    texts = {r["chunk_id"]: r["text"] for r in search["results"]}
    for c in answer["citations"]:  # quotes are verbatim slices of the retrieved chunks
        assert texts[c["chunk_id"]][c["quote_start"] :].startswith(c["quote"])


def test_answer_route_abstains_below_the_gate(
    built_home: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    monkeypatch.setenv("RAG_PLATFORM_HOME", str(built_home))
    monkeypatch.setenv("RAG_PLATFORM__EMBEDDING__MODEL", str(tiny_model_dir))
    monkeypatch.setenv("RAG_PLATFORM__ANSWER__MIN_SIMILARITY", "1.01")  # no cosine reaches it
    with Server(built_home) as client:
        answer = client.post("/answer", json={"question": "tides"}).json()
    assert answer["abstained"] is True and answer["answer"] is None and answer["citations"] == []
    assert "min_similarity" in answer["reason"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"question": ""}, 422),
        ({"question": "x", "k": 0}, 422),
        ({"question": "x", "mode": "fuzzy"}, 422),
        ({"question": "x", "filters": {"colour": "red"}}, 422),
        ({"query": "x"}, 422),
    ],
)
def test_answer_route_client_mistakes(api: httpx.Client, body: dict, status: int) -> None:
    response = api.post("/answer", json=body)
    assert response.status_code == status and response.json()["error"]["code"] == "validation_error"


def test_ask_command_prints_one_json_document(
    built_home: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAG_PLATFORM_HOME", str(built_home))
    monkeypatch.setenv("RAG_PLATFORM__EMBEDDING__MODEL", str(tiny_model_dir))
    assert main(["ask", "How do I roll back an index version?", "--k", "3", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer) >= CONTRACT_KEYS and answer["abstained"] is False
    assert {c["source"].rsplit("/", 1)[-1] for c in answer["citations"]} <= {
        "rollback.md",
        "volcanoes.md",
        "baking.md",
        "chess.txt",
        "tides.html",
    }
    assert main(["ask", "tides", "--k", "0", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: k must be")
    assert main(["ask", "tides", "--filter", "nofield", "--json"]) == 2
