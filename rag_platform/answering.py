"""Grounded answers: retrieve from the served index, then answer only from the retrieved chunks, with citations.

Two generators sit behind one interface. The extractive one needs no service: it splits the retrieved chunks
into sentences, scores each against the question with the embedding model that search uses, and quotes the
best ones verbatim, each followed by its ``[n]`` marker. Cohere's chat with documents (when
``COHERE_API_KEY`` is set) writes the answer and returns native citations; a timeout, a 429 or any error
falls back to the extractive answer with the reason. Both stand behind one abstention gate: when no retrieved
sentence is similar enough to the question (``answer.min_similarity``, calibrated by
``benchmarks/answer_quality.py``), the answer is null and ``reason`` says why, instead of quoting the
nearest text.

Invariants of every answer: each ``[n]`` marker in ``answer`` has the citation numbered ``n``, and each
citation's ``quote`` is a verbatim slice of its chunk's text.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rag_platform.cohere_api import CohereService

if TYPE_CHECKING:
    from rag_platform.config import Settings
    from rag_platform.retrieval import Searcher

GENERATORS = ("auto", "extractive", "cohere")
_MARKER = re.compile(r"\[(\d+)\]")
# A line break after a line of 40 characters or more is wrapping, not a sentence end, unless the next line
# starts a list item, a quote, a table row, a heading or a code fence; a shorter line is a title or a label.
_WRAP = re.compile(r"(?<=[^\n]{40})\n(?!\n|[ \t]*(?:[-*+>|#`]|\d+[.)][ \t]))")
_WORD = re.compile(r"[^\W\d_]{2,}")


class AnswerInputError(ValueError):
    """A client mistake in an answer request; ``code`` is the API error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class GeneratorUnavailable(RuntimeError):
    """The generator cannot answer (not configured, unreachable, timed out); the message says why."""


@dataclass(frozen=True, slots=True)
class AskRequest:
    question: str
    k: int = 5
    mode: str = "hybrid"
    rerank: str | None = None
    filters: Mapping[str, str | Sequence[str]] | None = field(default=None)


@dataclass(frozen=True, slots=True)
class Sentence:
    """A sentence of a retrieved chunk: ``text == chunk_text[start:end]``."""

    result: int
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """What retrieval found for a question, split into sentences and scored against it."""

    question: str
    results: Sequence[Mapping[str, Any]]
    sentences: Sequence[Sentence]
    scores: np.ndarray
    vectors: np.ndarray
    embed: Callable[[Sequence[str]], np.ndarray]

    @property
    def best(self) -> float:
        return float(self.scores.max()) if len(self.sentences) else 0.0


@dataclass(frozen=True, slots=True)
class Draft:
    """A generator's answer: text with ``[n]`` markers and the citations they number (``n`` from 1)."""

    answer: str | None
    citations: list[dict[str, Any]]
    reason: str | None = None


class Generator(Protocol):
    provider: str
    model: str

    def generate(self, evidence: Evidence) -> Draft:
        """An answer from the evidence only; raises GeneratorUnavailable when it cannot run."""
        ...


def split_sentences(text: str, skip_prefix: str = "") -> list[tuple[int, int]]:
    """(start, end) spans of the sentences of ``text``, after ``skip_prefix`` (the chunk's heading path).

    The spans index the original text, so a quote cut from them is verbatim; wrapped lines are joined for
    the segmenter only (a newline becomes a space of the same length).
    """
    import pysbd

    offset = len(skip_prefix) if skip_prefix and text.startswith(skip_prefix) else 0
    body = _WRAP.sub(" ", text[offset:])
    spans: list[tuple[int, int]] = []
    cursor = 0
    for segment in pysbd.Segmenter(language="en", clean=False).segment(body):
        at = body.find(segment, cursor)
        if at < 0:  # the segmenter changed the text; skip the piece rather than quote what isn't there
            continue
        cursor = at + len(segment)
        stripped = segment.strip()
        if len(_WORD.findall(stripped)) < 3 or stripped.startswith(("```", "|")):
            continue
        start = at + segment.index(stripped)
        spans.append((offset + start, offset + start + len(stripped)))
    return spans


def _heading(result: Mapping[str, Any]) -> str:
    """The chunk's heading-path line (the chunker starts every chunk with it), or '' when absent."""
    first, sep, _ = str(result["text"]).partition("\n\n")
    return first if sep and first.startswith(str(result.get("title") or "\0")) else ""


def gather_evidence(
    question: str, results: Sequence[Mapping[str, Any]], embed: Callable[[Sequence[str]], np.ndarray]
) -> Evidence:
    """Split the results' chunks into sentences and score each against the question (cosine).

    A sentence is embedded with its chunk's heading path in front, as chunks are embedded for search, so
    "He was born in 1921." still knows whom it is about. Sentences holding a ``[n]``-like string are left
    out: quoted verbatim, they would read as citation markers.
    """
    sentences: list[Sentence] = []
    contexts: list[str] = []
    for i, result in enumerate(results):
        text, heading = str(result["text"]), _heading(result)
        for start, end in split_sentences(text, heading):
            quote = text[start:end]
            if _MARKER.search(quote):
                continue
            sentences.append(Sentence(i, start, end, quote))
            contexts.append(f"{heading}\n{quote}" if heading else quote)
    vectors = embed([question, *contexts]) if sentences else np.zeros((1, 1), dtype=np.float32)
    scores = vectors[1:] @ vectors[0] if sentences else np.zeros(0, dtype=np.float32)
    return Evidence(question, results, sentences, np.asarray(scores), np.asarray(vectors[1:]), embed)


def citation(n: int, result: Mapping[str, Any], quote: str, start: int) -> dict[str, Any]:
    return {
        "n": n,
        "chunk_id": result["chunk_id"],
        "document_id": result["document_id"],
        "source": result["source"],
        "title": result["title"],
        "quote": quote,
        "document_version": result["document_version"],
        "quote_start": start,
    }


class ExtractiveGenerator:
    """Quotes the sentences most similar to the question, best first, each with its citation."""

    provider = "extractive"

    def __init__(self, model: str, max_sentences: int = 3, margin: float = 0.1):
        self.model = model
        self.max_sentences = max_sentences
        self.margin = margin

    def generate(self, evidence: Evidence) -> Draft:
        order = sorted(
            range(len(evidence.sentences)),
            key=lambda i: (-float(evidence.scores[i]), evidence.results[evidence.sentences[i].result]["chunk_id"], i),
        )
        floor = evidence.best - self.margin
        picked: list[int] = []
        for i in order:
            if len(picked) == self.max_sentences or evidence.scores[i] < floor:
                break
            # Overlapping chunks repeat sentences; near-duplicates add a citation but no information.
            if any(float(evidence.vectors[i] @ evidence.vectors[j]) > 0.95 for j in picked):
                continue
            picked.append(i)
        citations = []
        parts = []
        for n, i in enumerate(picked, start=1):
            s = evidence.sentences[i]
            citations.append(citation(n, evidence.results[s.result], s.text, s.start))
            parts.append(f"{' '.join(s.text.split())} [{n}]")
        return Draft(" ".join(parts), citations)


class CohereGenerator(CohereService):
    """Cohere chat with the retrieved chunks as documents; its native citations become ``[n]`` markers.

    Cohere cites spans of its own answer; each citation's quote is the cited chunk's sentence that matches
    the span (the span itself when it occurs verbatim in the chunk), so quotes stay verbatim chunk text.
    ``http_client`` lets tests replay recorded exchanges under the real SDK.
    """

    provider = "cohere"
    unavailable = GeneratorUnavailable
    default_timeout_s = 20.0
    system = (
        "Answer the question using only the provided documents. Be concise. If the documents do not "
        "contain the answer, say that you cannot answer from them."
    )

    def generate(self, evidence: Evidence) -> Draft:
        client = self._sdk()
        documents = [
            {"id": f"doc-{i}", "data": {"title": r["title"], "source": r["source"], "snippet": r["text"]}}
            for i, r in enumerate(evidence.results)
        ]
        try:
            response = client.chat(
                model=self.model,
                messages=[{"role": "system", "content": self.system}, {"role": "user", "content": evidence.question}],
                documents=documents,
                temperature=0.0,
                request_options={"max_retries": self.max_retries, "timeout_in_seconds": int(self.timeout_s) or 1},
            )
            message = response.message
            text = "".join(item.text for item in message.content or [] if getattr(item, "type", "") == "text")
            cited = [c for c in message.citations or [] if c.end is not None and c.sources]
        except Exception as exc:
            raise GeneratorUnavailable(f"cohere chat failed: {type(exc).__name__}: {str(exc)[:200]}") from exc
        text = _MARKER.sub(r"(\1)", text)  # same length: the citation offsets stay valid
        numbers: dict[tuple[int, int], int] = {}
        citations: list[dict[str, Any]] = []
        insertions: dict[int, list[int]] = {}
        for c in sorted(cited, key=lambda c: (c.end, c.start or 0)):
            for source in c.sources:
                index = _document_index(getattr(source, "id", None), len(evidence.results))
                if index is None:
                    continue
                quote, start = _matching_quote(evidence, index, c.text or text[c.start or 0 : c.end])
                key = (index, start)
                if key not in numbers:
                    numbers[key] = len(citations) + 1
                    citations.append(citation(numbers[key], evidence.results[index], quote, start))
                marks = insertions.setdefault(min(c.end, len(text)), [])
                if numbers[key] not in marks:
                    marks.append(numbers[key])
        if not citations:
            return Draft(None, [], "cohere answered without citing any retrieved chunk")
        for end in sorted(insertions, reverse=True):
            text = text[:end] + "".join(f"[{n}]" for n in insertions[end]) + text[end:]
        return Draft(text.strip(), citations)


def _document_index(identifier: str | None, count: int) -> int | None:
    if not identifier or not identifier.startswith("doc-") or not identifier[4:].isdigit():
        return None
    index = int(identifier[4:])
    return index if index < count else None


def _matching_quote(evidence: Evidence, index: int, cited: str) -> tuple[str, int]:
    """The verbatim text of chunk ``index`` that supports the cited span: (quote, start offset)."""
    text = str(evidence.results[index]["text"])
    cited = cited.strip()
    at = text.find(cited) if len(cited) >= 12 else -1
    if at >= 0:
        return cited, at
    candidates = [i for i, s in enumerate(evidence.sentences) if s.result == index]
    if not candidates:
        body = text[len(_heading(evidence.results[index])) :].strip() or text
        start = text.find(body)
        return body[:300], start
    vector = evidence.embed([cited])[0]
    best = max(candidates, key=lambda i: float(evidence.vectors[i] @ vector))
    return evidence.sentences[best].text, evidence.sentences[best].start


def check_answer(answer: Mapping[str, Any], texts: Mapping[str, str]) -> None:
    """Raise ValueError unless every ``[n]`` has its citation and every quote is its chunk's text at
    ``quote_start``; ``texts`` maps chunk ids to chunk texts. Cheap: every answer is checked before it leaves."""
    numbers = {c["n"] for c in answer["citations"]}
    missing = {int(m) for m in _MARKER.findall(answer["answer"] or "")} - numbers
    if missing:
        raise ValueError(f"answer has markers without citations: {sorted(missing)}")
    for c in answer["citations"]:
        text = texts.get(c["chunk_id"], "")
        if text[c["quote_start"] : c["quote_start"] + len(c["quote"])] != c["quote"] or not c["quote"]:
            raise ValueError(f"citation [{c['n']}] does not quote chunk {c['chunk_id']} verbatim")
    if bool(answer["abstained"]) != (answer["answer"] is None):
        raise ValueError("an answer is abstained exactly when it is null")


class Answerer:
    """Answers questions from the served index; built once per process and shared between threads."""

    def __init__(
        self,
        settings: Settings,
        searcher: Searcher | None = None,
        generator: Generator | None = None,
    ):
        from rag_platform.retrieval import Searcher

        self.settings = settings
        self.searcher = searcher or Searcher.from_settings(settings)
        self._generator = generator
        self._extractive: ExtractiveGenerator | None = None
        self._lock = threading.Lock()

    @property
    def extractive(self) -> ExtractiveGenerator:
        with self._lock:
            if self._extractive is None:
                a = self.settings.answer
                self._extractive = ExtractiveGenerator(
                    self.searcher.embedder.model_id, a.max_sentences, a.sentence_margin
                )
            return self._extractive

    @property
    def generator(self) -> Generator:
        """The configured generator: Cohere for ``auto`` with a key or for ``cohere``, else extractive."""
        with self._lock:
            if self._generator is None:
                a = self.settings.answer
                key = os.environ.get("COHERE_API_KEY")
                if a.generator == "cohere" or (a.generator == "auto" and key):
                    self._generator = CohereGenerator(a.cohere_model, key, a.timeout_s)
        return self._generator or self.extractive

    def validated(self, request: AskRequest) -> Any:
        """The search request behind a question; raises AnswerInputError naming the first problem."""
        from rag_platform.search_request import SearchInputError, SearchRequest

        if not isinstance(request.question, str) or not request.question.strip():
            raise AnswerInputError("validation_error", "question must be a non-empty string")
        search = SearchRequest(request.question, request.k, request.mode, request.rerank, request.filters)
        try:
            return search.validated(self.settings)
        except SearchInputError as exc:
            raise AnswerInputError(exc.code, str(exc).replace("query", "question", 1)) from None

    def ask(self, request: AskRequest) -> dict[str, Any]:
        """The contract's answer for one question: retrieve (and rerank, per configuration), then answer."""
        started = time.perf_counter()
        found = self.searcher.search(self.validated(request))
        return self.answer_from(
            found["query"], found["results"], found["index_version"], started, found.get("timings_ms", {})
        )

    def answer_from(
        self,
        question: str,
        results: Sequence[Mapping[str, Any]],
        index_version: str,
        started: float | None = None,
        timings_ms: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Answer ``question`` from already retrieved results (search results, best first)."""
        started = time.perf_counter() if started is None else started
        threshold = self.settings.answer.min_similarity
        generator = self.generator
        gathered = time.perf_counter()
        evidence = gather_evidence(question, results, self.searcher.embedder.embed)
        timings = {**(timings_ms or {}), "evidence": (time.perf_counter() - gathered) * 1000}
        fallback: str | None = None
        if not results:
            draft = Draft(None, [], "the index returned no results for this question")
        elif evidence.best < threshold:
            draft = Draft(
                None,
                [],
                f"nothing retrieved answers the question: the closest sentence has similarity "
                f"{evidence.best:.3f}, below answer.min_similarity {threshold}",
            )
        else:
            generating = time.perf_counter()
            try:
                draft = generator.generate(evidence)
            except GeneratorUnavailable as exc:
                fallback = str(exc)
                generator = self.extractive
                draft = generator.generate(evidence)
            timings["generate"] = (time.perf_counter() - generating) * 1000
        answer = {
            "question": question,
            "answer": draft.answer,
            "abstained": draft.answer is None,
            "reason": draft.reason,
            "citations": draft.citations,
            "generator": {"provider": generator.provider, "model": generator.model, "fallback_reason": fallback},
            "index_version": index_version,
            "took_ms": round((time.perf_counter() - started) * 1000, 3),
            "grounding": {"best_similarity": round(evidence.best, 6), "min_similarity": threshold},
            "timings_ms": {name: round(value, 3) for name, value in timings.items()},
        }
        check_answer(answer, {str(r["chunk_id"]): str(r["text"]) for r in results})
        return answer


@dataclass(frozen=True, slots=True)
class StandingAnswers:
    answers: tuple[dict[str, Any], ...]

    @property
    def abstained(self) -> int:
        return sum(1 for a in self.answers if a["abstained"])

    @property
    def markdown(self) -> str:
        lines = ["| question | answer | citations | generator |", "|---|---|---|---|"]
        for a in self.answers:
            shown = a["answer"] if a["answer"] is not None else f"(abstained: {a['reason']})"
            cited = "; ".join(f"[{c['n']}] {c['source']} ({c['chunk_id'][:12]})" for c in a["citations"])
            generator = a["generator"]["provider"] + (" (fallback)" if a["generator"]["fallback_reason"] else "")
            cells = [a["question"], shown, cited or "-", generator]
            lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        return "\n".join(lines)


def answer_standing(searcher: Searcher) -> StandingAnswers:
    """Answer every ``queries.standing`` question against the served index (hybrid, configured reranker)."""
    settings = searcher.settings
    answerer = Answerer(settings, searcher)
    return StandingAnswers(
        tuple(answerer.ask(AskRequest(q, k=settings.queries.k, mode="hybrid")) for q in settings.queries.standing)
    )
