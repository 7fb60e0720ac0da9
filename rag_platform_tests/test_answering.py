"""Answers from retrieved chunks: sentence spans, the extractive generator with the real embedding model,
abstention, and Cohere chat through recorded HTTP exchanges under the real SDK (plus a live test with a key)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cohere_recorder import RecordedCohere, error

from rag_platform.answering import (
    Answerer,
    CohereGenerator,
    StandingAnswers,
    check_answer,
    split_sentences,
)
from rag_platform.config import load_settings
from rag_platform.records import sha256_hex
from rag_platform.retrieval import Searcher


def result(title: str, body: str, section: str = "") -> dict[str, Any]:
    """A search result as the chunker and backend produce it: heading path, blank line, body."""
    heading = f"{title} > {section}" if section else title
    text = f"{heading}\n\n{body}"
    return {
        "chunk_id": sha256_hex(text)[:32],
        "document_id": sha256_hex(title)[:32],
        "source": f"file:///corpus/{title.lower().replace(' ', '-')}.md",
        "title": title,
        "text": text,
        "document_version": sha256_hex(body),
        "score": 0.5,
    }


RESULTS = [
    result(
        "Rolling back an index version",
        "Run `rag-platform index rollback VERSION` to point the alias at an earlier version. The switch is\n"
        "atomic: queries never see a half-built index.",
        "Switching back",
    ),
    result(
        "Ocean tides",
        "Tides are caused by the gravitational pull of the Moon and the Sun on the oceans. Most coasts see two\n"
        "high tides a day. Spring tides come at new and full moon.",
    ),
    result("Chess openings", "The Sicilian Defence begins 1.e4 c5 and leads to sharp, unbalanced positions."),
]


@pytest.mark.parametrize(
    ("text", "prefix", "expected"),
    [
        ("A first one here. A second one here!", "", ["A first one here.", "A second one here!"]),
        ("Title > Part\n\nOnly the body counts here.", "Title > Part", ["Only the body counts here."]),
        (
            "A wrapped sentence that goes on past the fortieth column\nand ends on the next line. Next one here.",
            "",
            ["A wrapped sentence that goes on past the fortieth column\nand ends on the next line.", "Next one here."],
        ),
        (
            "Steps\n- install the package first\n- run the refresh command",
            "",
            ["- install the package first", "- run the refresh command"],
        ),
        ("Ok. Too short? Use e.g. the alias for this.", "", ["Use e.g. the alias for this."]),
    ],
)
def test_sentence_spans_are_verbatim_slices(text: str, prefix: str, expected: list[str]) -> None:
    spans = split_sentences(text, prefix)
    assert [text[a:b] for a, b in spans] == expected


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("answers") / "home"
    saved = os.environ.pop("COHERE_API_KEY", None)  # the default generator must not depend on the machine
    try:
        yield load_settings(home)
    finally:
        if saved is not None:
            os.environ["COHERE_API_KEY"] = saved


@pytest.fixture(scope="module")
def answerer(settings: Any) -> Answerer:
    """The extractive answerer with the bundled embedding model (the one search uses); no index needed."""
    return Answerer(settings, Searcher(settings))


def test_extractive_answer_quotes_the_sentence_that_answers(answerer: Answerer) -> None:
    answer = answerer.answer_from("What causes the tides?", RESULTS, "v1")
    assert answer["abstained"] is False and answer["reason"] is None
    first = answer["citations"][0]
    assert first["chunk_id"] == RESULTS[1]["chunk_id"] and first["n"] == 1
    assert first["quote"] == "Tides are caused by the gravitational pull of the Moon and the Sun on the oceans."
    assert answer["answer"].startswith(first["quote"] + " [1]")
    assert answer["generator"] == {
        "provider": "extractive",
        "model": answerer.searcher.embedder.model_id,
        "fallback_reason": None,
    }
    assert answer["index_version"] == "v1" and answer["took_ms"] > 0
    for c in answer["citations"]:  # every citation carries the chunk's provenance
        source = next(r for r in RESULTS if r["chunk_id"] == c["chunk_id"])
        assert (c["document_id"], c["source"], c["title"], c["document_version"]) == (
            source["document_id"],
            source["source"],
            source["title"],
            source["document_version"],
        )
        assert f"[{c['n']}]" in answer["answer"]
        assert source["text"][c["quote_start"] :].startswith(c["quote"])


def test_rollback_question_cites_the_rollback_guide(answerer: Answerer) -> None:
    answer = answerer.answer_from("How do I go back to an earlier index version?", RESULTS, "v1")
    assert answer["citations"][0]["chunk_id"] == RESULTS[0]["chunk_id"]
    assert "rag-platform index rollback VERSION" in answer["citations"][0]["quote"]


@pytest.mark.parametrize(
    "question", ["What is the capital of Mongolia?", "How much does a return flight to Lima cost in March?"]
)
def test_abstains_when_nothing_retrieved_answers(answerer: Answerer, question: str) -> None:
    answer = answerer.answer_from(question, RESULTS, "v1")
    assert answer["abstained"] is True and answer["answer"] is None and answer["citations"] == []
    assert "answer.min_similarity" in answer["reason"]
    assert answer["grounding"]["best_similarity"] < answer["grounding"]["min_similarity"]


def test_abstains_without_results(answerer: Answerer) -> None:
    answer = answerer.answer_from("What causes the tides?", [], "v1")
    assert answer["abstained"] is True and "no results" in answer["reason"]


def test_text_that_looks_like_a_marker_is_never_quoted(answerer: Answerer) -> None:
    """Regression: a quoted '[2]' from the source would read as a citation the answer does not have."""
    noted = result("Ocean tides", "Tides are caused by the pull of the Moon on the oceans [2]. Tides rise twice.")
    answer = answerer.answer_from("What causes the tides?", [noted], "v1")
    assert all("[2]" not in c["quote"] for c in answer["citations"])
    check_answer(answer, {noted["chunk_id"]: noted["text"]})


def test_check_answer_rejects_broken_invariants() -> None:
    good = {"answer": "Quote. [1]", "abstained": False, "citations": [{"n": 1, "chunk_id": "c", "quote": "Quote."}]}
    good["citations"][0]["quote_start"] = 0
    check_answer(good, {"c": "Quote. More."})
    with pytest.raises(ValueError, match="markers without citations"):
        check_answer({**good, "answer": "Quote. [1] [2]"}, {"c": "Quote. More."})
    with pytest.raises(ValueError, match="verbatim"):
        check_answer(good, {"c": "Another text."})


def test_standing_answers_markdown_shows_answers_and_abstentions(answerer: Answerer) -> None:
    answers = StandingAnswers(
        (
            answerer.answer_from("What causes the tides?", RESULTS, "v1"),
            answerer.answer_from("What is the capital of Mongolia?", RESULTS, "v1"),
        )
    )
    assert answers.abstained == 1
    table = answers.markdown.splitlines()
    assert len(table) == 4 and "gravitational pull" in table[2] and "(abstained:" in table[3]


# ---- Cohere, recorded ------------------------------------------------------------------------------------------

ANSWER_TEXT = "Tides come from the gravity of the Moon and the Sun. Spring tides come at new and full moon."


def chat_ok(*citations: tuple[int, int, list[int]], text: str = ANSWER_TEXT) -> httpx.Response:
    """A Cohere v2 chat response with document citations (start, end, cited document indexes)."""
    body = {
        "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
        "finish_reason": "COMPLETE",
        "message": {
            "role": "assistant",
            "content": [{"type": "text", "text": text}],
            "citations": [
                {
                    "start": start,
                    "end": end,
                    "text": text[start:end],
                    "sources": [
                        {"type": "document", "id": f"doc-{i}", "document": {"id": f"doc-{i}", "title": "t"}}
                        for i in docs
                    ],
                    "type": "TEXT_CONTENT",
                }
                for start, end, docs in citations
            ],
        },
        "usage": {"billed_units": {"input_tokens": 412, "output_tokens": 24}, "tokens": {"input_tokens": 1210}},
    }
    return httpx.Response(200, json=body)


def cohere_answerer(settings: Any, answerer: Answerer, recorded: RecordedCohere) -> Answerer:
    generator = CohereGenerator("command-a-03-2025", "test-key-123", http_client=recorded.client())
    return Answerer(settings, answerer.searcher, generator)


def test_cohere_request_citations_become_markers_and_verbatim_quotes(settings: Any, answerer: Answerer) -> None:
    gravity = "the gravity of the Moon and the Sun"  # not in any chunk: quoted by its closest sentence
    span = ANSWER_TEXT.index(gravity)
    second = ANSWER_TEXT.index("Spring tides come at new and full moon")  # verbatim in the chunk: quoted as is
    recorded = RecordedCohere(chat_ok((span, span + len(gravity), [1]), (second, len(ANSWER_TEXT) - 1, [1, 2])))
    answer = cohere_answerer(settings, answerer, recorded).answer_from("What causes the tides?", RESULTS, "v1")
    assert answer["generator"] == {"provider": "cohere", "model": "command-a-03-2025", "fallback_reason": None}
    assert answer["answer"] == (
        "Tides come from the gravity of the Moon and the Sun[1]. Spring tides come at new and full moon[2][3]."
    )
    one, two, three = answer["citations"]
    assert one["chunk_id"] == two["chunk_id"] == RESULTS[1]["chunk_id"] and three["chunk_id"] == RESULTS[2]["chunk_id"]
    assert one["quote"] == "Tides are caused by the gravitational pull of the Moon and the Sun on the oceans."
    assert two["quote"] == "Spring tides come at new and full moon"  # the cited span occurs verbatim in the chunk
    assert three["quote"] == "The Sicilian Defence begins 1.e4 c5 and leads to sharp, unbalanced positions."
    [request] = recorded.requests
    assert request.method == "POST" and request.url.path == "/v2/chat"
    assert request.headers["authorization"] == "Bearer test-key-123"
    sent = json.loads(request.content)
    assert sent["model"] == "command-a-03-2025" and sent["messages"][-1] == {
        "role": "user",
        "content": "What causes the tides?",
    }
    assert [d["id"] for d in sent["documents"]] == ["doc-0", "doc-1", "doc-2"]
    assert [d["data"]["snippet"] for d in sent["documents"]] == [r["text"] for r in RESULTS]


def test_cohere_rate_limit_is_retried(settings: Any, answerer: Answerer) -> None:
    recorded = RecordedCohere(error(429, "rate limited", **{"retry-after": "0"}), chat_ok((0, 5, [1])))
    answer = cohere_answerer(settings, answerer, recorded).answer_from("What causes the tides?", RESULTS, "v1")
    assert answer["generator"]["provider"] == "cohere" and len(recorded.requests) == 2


@pytest.mark.parametrize(
    ("replies", "reason"),
    [
        ([error(500, "internal")] * 3, "InternalServerError"),
        ([error(401, "invalid api token")], "UnauthorizedError"),
        ([httpx.ReadTimeout("timed out")] * 3, "ReadTimeout"),
        ([error(429, "rate limited", **{"retry-after": "0"})] * 3, "TooManyRequestsError"),
    ],
)
def test_cohere_failures_fall_back_to_the_extractive_answer(
    settings: Any, answerer: Answerer, replies: list[httpx.Response | Exception], reason: str
) -> None:
    recorded = RecordedCohere(*replies)
    answer = cohere_answerer(settings, answerer, recorded).answer_from("What causes the tides?", RESULTS, "v1")
    generator = answer["generator"]
    assert generator["provider"] == "extractive" and reason in generator["fallback_reason"]
    assert "test-key-123" not in generator["fallback_reason"]
    assert answer["citations"][0]["chunk_id"] == RESULTS[1]["chunk_id"]  # still answered, from the chunks


def test_cohere_answer_without_citations_abstains(settings: Any, answerer: Answerer) -> None:
    recorded = RecordedCohere(chat_ok(text="I cannot answer that from the documents."))
    answer = cohere_answerer(settings, answerer, recorded).answer_from("What causes the tides?", RESULTS, "v1")
    assert answer["abstained"] is True and answer["answer"] is None and "without citing" in answer["reason"]


def test_abstention_gate_skips_the_cohere_call(settings: Any, answerer: Answerer) -> None:
    recorded = RecordedCohere()
    answer = cohere_answerer(settings, answerer, recorded).answer_from("Capital of Mongolia?", RESULTS, "v1")
    assert answer["abstained"] is True and recorded.requests == []


def test_cohere_configured_without_a_key_says_so(
    settings: Any, answerer: Answerer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_PLATFORM__ANSWER__GENERATOR", "cohere")
    configured = Answerer(load_settings(settings.home), answerer.searcher)
    answer = configured.answer_from("What causes the tides?", RESULTS, "v1")
    assert answer["generator"]["provider"] == "extractive"
    assert answer["generator"]["fallback_reason"] == "COHERE_API_KEY is not set"


@pytest.mark.cohere
@pytest.mark.skipif(not os.environ.get("COHERE_API_KEY"), reason="COHERE_API_KEY is not set: live Cohere skipped")
def test_cohere_live(settings: Any, answerer: Answerer) -> None:
    live = CohereGenerator(settings.answer.cohere_model, os.environ["COHERE_API_KEY"])
    answer = Answerer(settings, answerer.searcher, live).answer_from("What causes the tides?", RESULTS, "v1")
    assert answer["generator"]["provider"] == "cohere", answer["generator"]
    assert answer["abstained"] is False and RESULTS[1]["chunk_id"] in {c["chunk_id"] for c in answer["citations"]}


def test_settings_reject_an_unknown_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag_platform.config import ConfigError

    monkeypatch.setenv("RAG_PLATFORM__ANSWER__GENERATOR", "gpt")
    with pytest.raises(ConfigError, match=r"answer\.generator"):
        load_settings(tmp_path / "home")
