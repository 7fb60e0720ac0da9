"""Fine-tuning the embedding model on the served corpus: training pairs without labels, hard negatives mined
from the served vectors, a contrastive training loop on CPU with a time budget, and a versioned model folder.

Pairs come from the chunks themselves: a document's title -> its first passage, a heading -> its section's
passage (when the heading is not the title), and neighbouring passages of one document. A pair whose anchor
matches an evaluation query (equal after normalising, or one contained in the other at word boundaries) is
dropped, so the queries that decide publishing are never trained on. Judged documents stay in: their text is
the corpus users search, and the judgments themselves are never read.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag_platform.records import stable_hash

Log = Callable[[str], None]

# Bumped when the pair derivation or the training loop changes, so a new recipe gets a new model version.
RECIPE = "ft-r2"
# A mined negative scoring this close to the positive is likely relevant too (a false negative): skip it.
FALSE_NEGATIVE_MARGIN = 0.95
MIN_ANCHOR_CHARS = 3


@dataclass(frozen=True, slots=True)
class ChunkRow:
    chunk_id: str
    document_id: str
    ordinal: int
    title: str
    heading_path: str
    text: str
    text_hash: str


@dataclass(frozen=True, slots=True)
class Pair:
    anchor: str
    positive: str
    kind: str  # title | heading | neighbour
    document_id: str
    positive_hash: str  # text hash of the chunk the positive comes from
    negative: str | None = None


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    seed: int
    batch_size: int
    learning_rate: float
    epochs: int
    budget_s: int
    max_pairs: int
    hard_negatives: int
    max_tokens: int = 64

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "recipe": RECIPE}


@dataclass(frozen=True, slots=True)
class TrainResult:
    steps: int
    pairs_seen: int
    seconds: float
    mean_loss: float
    stopped_by_budget: bool


def normalise(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def body_of(row: ChunkRow) -> str:
    """The passage without the heading context the chunker puts in front of it."""
    prefix = f"{row.heading_path}\n\n"
    return row.text[len(prefix) :] if row.heading_path and row.text.startswith(prefix) else row.text


def corpus_pairs(rows: Iterable[ChunkRow]) -> list[Pair]:
    """Title -> first passage, heading -> passage, passage -> next passage of the same document; deduplicated
    on (normalised anchor, positive) and sorted, so the same chunks always give the same pairs."""
    by_doc: dict[str, list[ChunkRow]] = {}
    for row in rows:
        by_doc.setdefault(row.document_id, []).append(row)
    pairs: dict[tuple[str, str], Pair] = {}

    def add(anchor: str, row: ChunkRow, kind: str) -> None:
        positive = body_of(row).strip()
        anchor = anchor.strip()
        if len(anchor) < MIN_ANCHOR_CHARS or not positive or normalise(anchor) == normalise(positive):
            return
        key = (normalise(anchor), positive)
        pairs.setdefault(key, Pair(anchor, positive, kind, row.document_id, row.text_hash))

    for doc_rows in by_doc.values():
        doc_rows.sort(key=lambda r: r.ordinal)
        first = doc_rows[0]
        if first.title:
            add(first.title, first, "title")
        for row in doc_rows:
            heading = row.heading_path.rsplit(" > ", 1)[-1] if row.heading_path else ""
            if heading and normalise(heading) != normalise(row.title):
                add(heading, row, "heading")
        for before, after in itertools.pairwise(doc_rows):
            add(body_of(before), after, "neighbour")
    return [pairs[key] for key in sorted(pairs)]


def matches_query(anchor: str, queries: Sequence[str]) -> bool:
    """Whether ``anchor`` equals a query, contains one or is contained in one (normalised, at word bounds)."""
    a = f" {normalise(anchor)} "
    if not a.strip():
        return False
    for query in queries:
        q = f" {normalise(query)} "
        if q.strip() and (a in q or q in a):
            return True
    return False


def split_out_queries(pairs: Sequence[Pair], queries: Sequence[str]) -> tuple[list[Pair], int]:
    """Drop the pairs whose anchor matches an evaluation query; returns (kept pairs, dropped count)."""
    kept = [p for p in pairs if not matches_query(p.anchor, queries)]
    return kept, len(pairs) - len(kept)


def sample_pairs(pairs: Sequence[Pair], max_pairs: int, seed: int) -> list[Pair]:
    """At most ``max_pairs``, a seeded sample, in the input (sorted) order."""
    if len(pairs) <= max_pairs:
        return list(pairs)
    chosen = sorted(random.Random(seed).sample(range(len(pairs)), max_pairs))
    return [pairs[i] for i in chosen]


def mine_hard_negatives(
    pairs: Sequence[Pair],
    anchor_vectors: np.ndarray,
    chunk_vectors: np.ndarray,
    chunk_documents: Sequence[str],
    chunk_texts: Sequence[str],
    chunk_hashes: Sequence[str],
    depth: int = 10,
) -> list[Pair]:
    """For each pair, the best-scoring passage of another document under the served model that does not
    score within ``FALSE_NEGATIVE_MARGIN`` of the positive; pairs keep no negative when none qualifies."""
    if not len(pairs) or not len(chunk_documents):
        return list(pairs)
    position = {h: i for i, h in enumerate(chunk_hashes)}
    scores = anchor_vectors @ chunk_vectors.T
    depth = min(depth, scores.shape[1])
    top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
    mined = []
    for i, pair in enumerate(pairs):
        pos = position.get(pair.positive_hash)
        pos_score = float(scores[i, pos]) if pos is not None else 1.0
        negative = None
        for j in sorted(top[i], key=lambda j: (-scores[i, j], j)):
            if chunk_documents[j] != pair.document_id and scores[i, j] < FALSE_NEGATIVE_MARGIN * pos_score:
                negative = chunk_texts[j]
                break
        mined.append(Pair(pair.anchor, pair.positive, pair.kind, pair.document_id, pair.positive_hash, negative))
    return mined


def data_version(pairs: Sequence[Pair]) -> str:
    """Fingerprint of the training data (anchors, positives and negatives, in order)."""
    return stable_hash([[p.anchor, p.positive, p.negative or ""] for p in pairs], 16)


def model_version(base_model: str, data: str, config: TrainingConfig) -> str:
    """The fine-tuned model's version: base model, training data version and training settings."""
    return stable_hash({"base": base_model, "data": data, "training": config.describe()}, 12)


def _batches(pairs: Sequence[Pair], config: TrainingConfig) -> Iterable[list[Pair]]:
    rng = random.Random(config.seed)
    for _ in range(config.epochs):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for start in range(0, len(order) - 1, config.batch_size):
            batch = [pairs[i] for i in order[start : start + config.batch_size]]
            if len(batch) >= 2:  # in-batch negatives need company
                yield batch


def train(base_path: str, pairs: Sequence[Pair], target: Path, config: TrainingConfig, log: Log) -> TrainResult:
    """Fine-tune ``base_path`` with MultipleNegativesRankingLoss (in-batch negatives plus the mined hard
    negative of each pair) until the epochs are done or ``budget_s`` runs out; save to ``target`` atomically
    (a staging folder renamed into place). Seeded: shuffling, dropout and initialisation repeat."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    model = SentenceTransformer(base_path, device="cpu", backend="torch")
    window = model.max_seq_length
    model.max_seq_length = min(window, config.max_tokens)
    loss_fn = MultipleNegativesRankingLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    total_steps = config.epochs * max(1, len(pairs) // config.batch_size)
    # Linear warm-up over the first tenth of the steps: Adam's first updates are full-size whatever the
    # gradient, and on CPU a budget may allow only a few dozen steps (measured: without it, 23 steps at 2e-5
    # moved the vectors to 0.93 mean cosine of the base model's).
    warmup = max(1, total_steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    started = time.perf_counter()
    steps = seen = 0
    loss_sum = 0.0
    stopped = False
    model.train()
    for batch in _batches(pairs, config):
        if time.perf_counter() - started >= config.budget_s:
            stopped = True
            break
        columns = [[p.anchor for p in batch], [p.positive for p in batch]]
        if config.hard_negatives > 0 and all(p.negative for p in batch):
            columns.append([p.negative or "" for p in batch])
        features = [model.tokenize(texts) for texts in columns]
        loss = loss_fn(features, torch.zeros(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        steps += 1
        seen += len(batch)
        loss_sum += float(loss.detach())
        if steps == 1 or steps % 10 == 0:
            elapsed = time.perf_counter() - started
            log(f"fine-tuning: step {steps}/{total_steps}, loss {loss_sum / steps:.4f}, {elapsed:.0f} s")
    seconds = round(time.perf_counter() - started, 3)
    model.eval()
    model.max_seq_length = window
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".train-", dir=target.parent))
    model.save(str(staging))
    result = TrainResult(steps, seen, seconds, round(loss_sum / max(steps, 1), 6), stopped)
    (staging / "finetune.json").write_text(json.dumps(asdict(result)), encoding="utf-8")
    try:
        os.replace(staging, target)
    except OSError:  # another process saved the same version first
        shutil.rmtree(staging, ignore_errors=True)
    return result


def saved_result(target: Path) -> TrainResult | None:
    """The training result stored beside a saved model version (None when the folder is not complete)."""
    try:
        return TrainResult(**json.loads((target / "finetune.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
