"""Rebuild this subset from the full collection: ``python make_subset.py PATH/TO/dbpedia``.

Takes the first 6 judged queries (by id), up to 15 judged documents of each (highest grade first, then id),
and 60 unjudged distractors spread evenly over the corpus. Deterministic: the same input gives the same files.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

QUERIES, PER_QUERY, DISTRACTORS = 6, 15, 60


def main(source: Path, target: Path) -> None:
    with (source / "qrels" / "test.tsv").open(encoding="utf-8") as handle:
        rows = [(r["query-id"], r["corpus-id"], int(r["score"])) for r in csv.DictReader(handle, delimiter="\t")]
    judged = sorted({q for q, _, _ in rows})[:QUERIES]
    keep_rows = []
    for query in judged:
        mine = sorted((r for r in rows if r[0] == query), key=lambda r: (-r[2], r[1]))[:PER_QUERY]
        keep_rows.extend(mine)
    wanted = {doc for _, doc, _ in keep_rows}
    corpus = [json.loads(line) for line in (source / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    judged_ids = {doc for _, doc, _ in rows}
    unjudged = [d for d in corpus if d["_id"] not in judged_ids]
    step = max(1, len(unjudged) // DISTRACTORS)
    wanted |= {d["_id"] for d in unjudged[::step][:DISTRACTORS]}
    target.mkdir(parents=True, exist_ok=True)
    (target / "qrels").mkdir(exist_ok=True)
    (target / "corpus.jsonl").write_text(
        "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in corpus if d["_id"] in wanted), encoding="utf-8"
    )
    queries = [json.loads(line) for line in (source / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    (target / "queries.jsonl").write_text(
        "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries if q["_id"] in judged), encoding="utf-8"
    )
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in keep_rows]
    (target / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).parent)
