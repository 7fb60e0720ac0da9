"""A seeded synthetic Markdown corpus (headings, lists, code blocks) and a change generator, for benchmarks.

The same seed always writes the same files, so runs on different machines or commits measure the same work.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

_WORDS = (
    "index refresh chunk vector embedding query latency sensor asset pipeline document version ledger alias "
    "rollback gate quality schema model token overlap cache batch upsert delete tombstone warehouse snapshot "
    "cluster shard replica retry backoff lineage audit run fingerprint checksum corpus source folder parser "
    "heading paragraph list code table river mountain forest harbor bridge lantern compass orchard meadow "
    "granite copper silver violet amber crimson quartz marble cedar willow falcon otter badger heron"
).split()


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 18))]
    return " ".join(words).capitalize() + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(2, 5)))


def document_text(rng: random.Random, number: int) -> str:
    parts = [f"# Document {number}: {rng.choice(_WORDS)} {rng.choice(_WORDS)}", _paragraph(rng)]
    for section in range(rng.randint(2, 4)):
        parts.append(f"## Section {section + 1} {rng.choice(_WORDS)}")
        parts.append(_paragraph(rng))
        kind = rng.random()
        if kind < 0.4:
            parts.append("\n".join(f"- {_sentence(rng)}" for _ in range(rng.randint(2, 5))))
        elif kind < 0.6:
            parts.append(
                "```bash\n"
                + "\n".join(f"rag-platform {rng.choice(_WORDS)} --{rng.choice(_WORDS)}" for _ in range(3))
                + "\n```"
            )
        parts.append(_paragraph(rng))
    return "\n\n".join(parts) + "\n"


def generate_corpus(folder: Path, documents: int, seed: int = 7) -> list[Path]:
    """Write ``documents`` Markdown files under ``folder`` (100 per subfolder)."""
    rng = random.Random(seed)
    paths = []
    for number in range(documents):
        path = folder / f"part{number // 100:04d}" / f"doc{number:06d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document_text(rng, number), encoding="utf-8")
        paths.append(path)
    return paths


@dataclass(frozen=True, slots=True)
class ChangeSet:
    modified: list[Path]
    added: list[Path]
    deleted: list[Path]


def apply_changes(folder: Path, fraction: float, seed: int = 11) -> ChangeSet:
    """Modify, add and delete about ``fraction`` of the documents in total, a third each.

    A modification appends one new section, so a changed document keeps most of its chunks.
    """
    rng = random.Random(seed)
    existing = sorted(folder.rglob("*.md"))
    per_kind = max(1, round(len(existing) * fraction / 3))
    picked = rng.sample(existing, min(len(existing), 2 * per_kind))
    modified, deleted = picked[:per_kind], picked[per_kind:]
    for path in modified:
        path.write_text(path.read_text(encoding="utf-8") + f"\n## Update\n\n{_paragraph(rng)}\n", encoding="utf-8")
    for path in deleted:
        path.unlink()
    added = []
    for number in range(per_kind):
        path = folder / "added" / f"new{seed:04d}_{number:05d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document_text(rng, 900_000 + number), encoding="utf-8")
        added.append(path)
    return ChangeSet(modified, added, deleted)
