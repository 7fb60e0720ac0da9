"""Rerankers: Cohere through recorded HTTP exchanges (an httpx transport under the real SDK), a live Cohere
test when ``COHERE_API_KEY`` is set, and the cross-encoder path with a tiny model built and saved here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from cohere_recorder import RecordedCohere, error

from rag_platform.config import Settings
from rag_platform.records import Hit
from rag_platform.reranking import CohereReranker, CrossEncoderReranker, rerank_hits

HITS = [
    Hit(f"c{i}", f"d{i}", f"s{i}", f"t{i}", text, "v", score=1.0 - i / 10)
    for i, text in enumerate(
        [
            "Sensors hash the source folders on an interval.",
            "An index version is rolled back by moving the alias.",
            "Quarantined documents keep their reason.",
        ]
    )
]
QUERY = "how do I roll back an index version?"
SETTINGS = Settings(home=Path("unused-home"))  # rerank_hits reads only the rerank section


def recorded_reranker(recorded: RecordedCohere) -> CohereReranker:
    return CohereReranker("rerank-v3.5", "test-key-123", http_client=recorded.client())


def rerank_ok(*ranked: tuple[int, float]) -> httpx.Response:
    body = {
        "id": "5a1b6d3e-recorded",
        "results": [{"index": i, "relevance_score": s} for i, s in ranked],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
    }
    return httpx.Response(200, json=body)


def test_cohere_request_and_rescored_order() -> None:
    recorded = RecordedCohere(rerank_ok((1, 0.91), (2, 0.12)))
    ranked, info = rerank_hits("cohere", QUERY, HITS, 2, SETTINGS, recorded_reranker(recorded))
    assert info == {"applied": True, "provider": "cohere", "reason": None}
    assert [(h.chunk_id, h.score) for h in ranked] == [("c1", 0.91), ("c2", 0.12)]
    [request] = recorded.requests
    assert request.method == "POST" and request.url.path == "/v2/rerank"
    assert request.headers["authorization"] == "Bearer test-key-123"
    assert json.loads(request.content) == {
        "model": "rerank-v3.5",
        "query": QUERY,
        "documents": [h.text for h in HITS],
        "top_n": 2,
    }


def test_cohere_rate_limit_is_retried() -> None:
    recorded = RecordedCohere(error(429, "rate limited", **{"retry-after": "0"}), rerank_ok((0, 0.5)))
    ranked, info = rerank_hits("cohere", QUERY, HITS, 1, SETTINGS, recorded_reranker(recorded))
    assert info["applied"] and [h.chunk_id for h in ranked] == ["c0"]
    assert len(recorded.requests) == 2


@pytest.mark.parametrize(
    ("replies", "reason"),
    [
        ([error(500, "internal")] * 3, "InternalServerError"),
        ([error(401, "invalid api token")], "UnauthorizedError"),
        ([httpx.ReadTimeout("timed out")] * 3, "ReadTimeout"),
        ([error(429, "rate limited", **{"retry-after": "0"})] * 3, "TooManyRequestsError"),
    ],
)
def test_cohere_failures_fall_back_to_retrieval_order(replies: list[httpx.Response | Exception], reason: str) -> None:
    recorded = RecordedCohere(*replies)
    ranked, info = rerank_hits("cohere", QUERY, HITS, 2, SETTINGS, recorded_reranker(recorded))
    assert [h.chunk_id for h in ranked] == ["c0", "c1"]  # retrieval order, not an error
    assert info["applied"] is False and info["provider"] == "cohere" and reason in info["reason"]
    assert "test-key-123" not in info["reason"]


def test_cohere_without_a_key_says_so() -> None:
    ranked, info = rerank_hits("cohere", QUERY, HITS, 3, SETTINGS, CohereReranker("rerank-v3.5", None))
    assert len(ranked) == 3 and info["reason"] == "COHERE_API_KEY is not set"


@pytest.mark.cohere
@pytest.mark.skipif(not os.environ.get("COHERE_API_KEY"), reason="COHERE_API_KEY is not set: live Cohere skipped")
def test_cohere_live() -> None:
    live = CohereReranker("rerank-v3.5", os.environ["COHERE_API_KEY"])
    ranked, info = rerank_hits("cohere", QUERY, HITS, 3, SETTINGS, live)
    assert info["applied"], info
    assert ranked[0].chunk_id == "c1"


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CrossEncoder, tiny and randomly initialised (seeded), saved locally: no download."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rag_platform.embedding import resolve_model_path

    torch.manual_seed(0)
    target = tmp_path_factory.mktemp("tiny-cross-encoder")
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=1
    )
    BertForSequenceClassification(config).save_pretrained(target)
    AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2")).save_pretrained(target)
    CrossEncoder(str(target), device="cpu")  # loads as users will load it
    return target


def test_cross_encoder_rescores_with_the_model(tiny_cross_encoder: Path) -> None:
    from sentence_transformers import CrossEncoder

    reranker = CrossEncoderReranker(str(tiny_cross_encoder))
    ranked, info = rerank_hits("cross-encoder", QUERY, HITS, 3, SETTINGS, reranker)
    assert info == {"applied": True, "provider": "cross-encoder", "reason": None}
    expected = CrossEncoder(str(tiny_cross_encoder), device="cpu").predict([(QUERY, h.text) for h in HITS])
    order = sorted(range(3), key=lambda i: (-float(expected[i]), HITS[i].chunk_id))
    assert [h.chunk_id for h in ranked] == [HITS[i].chunk_id for i in order]
    assert [h.score for h in ranked] == pytest.approx([float(expected[i]) for i in order], abs=1e-5)


def test_cross_encoder_missing_path_falls_back(tmp_path: Path) -> None:
    ranked, info = rerank_hits("cross-encoder", QUERY, HITS, 2, SETTINGS, CrossEncoderReranker(str(tmp_path / "x")))
    assert [h.chunk_id for h in ranked] == ["c0", "c1"]
    assert info["applied"] is False and "does not exist" in info["reason"]
