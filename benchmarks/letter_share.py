"""How many real documents the old ``letter_share < 0.3`` rule would reject, and what they are.

Each collection is a BEIR corpus.jsonl or a folder of text files (Markdown, text, HTML, reStructuredText; Debian's
gzip-compressed docs are read too). Texts are measured with the dbt macro's own formula (DuckDB,
``[^[:alpha:]]`` removed), so the figures are what the old blocking expectation saw; the Unicode-aware share
(``str.isalpha``) and the "nothing to search" rule (no letter or digit at all) are measured beside it.

    python benchmarks/letter_share.py --beir DATASET_DIR ... --folder DOCS_DIR ... [--out results/letter_share.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb

from rag_platform.parsing import UnreadableDocument, parse_document
from rag_platform.quality import letter_share, nothing_to_search

OLD_MIN_LETTER_SHARE = 0.3
SUFFIXES = {".md", ".markdown", ".txt", ".text", ".html", ".htm", ".rst"}


def beir_texts(folder: Path) -> Iterator[tuple[str, str]]:
    with (folder / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            yield row["_id"], (row.get("title", "") + "\n\n" + row.get("text", "")).strip()


def folder_texts(folder: Path, limit: int) -> Iterator[tuple[str, str]]:
    count = 0
    for path in sorted(folder.rglob("*")):
        if count >= limit:
            return
        name = path.name[:-3] if path.name.endswith(".gz") else path.name
        suffix = Path(name).suffix.lower()
        if path.is_symlink() or not path.is_file() or suffix not in SUFFIXES:
            continue
        try:
            data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
            _, text, _ = parse_document(data, name if suffix != ".rst" else name[:-4] + ".txt")
        except (OSError, UnreadableDocument, EOFError, gzip.BadGzipFile):
            continue
        count += 1
        yield str(path.relative_to(folder)), text


def measure(name: str, texts: Iterator[tuple[str, str]]) -> dict[str, object]:
    rows = list(texts)
    con = duckdb.connect()
    con.execute("CREATE TABLE t (id VARCHAR, text VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", rows)
    # The dbt macro letter_share, verbatim.
    shares = dict(
        con.execute(
            "SELECT id, length(regexp_replace(text, '[^[:alpha:]]', '', 'g')) / greatest(length(text), 1) FROM t"
        ).fetchall()
    )
    flagged = sorted((shares[i], i) for i, _ in rows if shares[i] < OLD_MIN_LETTER_SHARE)
    unicode_flagged = [i for i, text in rows if letter_share(text) < OLD_MIN_LETTER_SHARE]
    empty_of_words = [i for i, text in rows if nothing_to_search(text)]
    values = sorted(shares.values())
    return {
        "collection": name,
        "documents": len(rows),
        "median_letter_share": round(values[len(values) // 2], 3) if values else None,
        "below_0.3_duckdb_ascii": len(flagged),
        "below_0.3_unicode": len(unicode_flagged),
        "nothing_to_search": len(empty_of_words),
        "examples_below_0.3": [{"id": i, "letter_share": round(s, 3)} for s, i in flagged[:8]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beir", action="append", default=[], help="a BEIR folder with corpus.jsonl")
    parser.add_argument("--folder", action="append", default=[], help="a folder of documentation files")
    parser.add_argument("--limit", type=int, default=20_000, help="files per folder at most")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "letter_share.json"))
    args = parser.parse_args()
    results = [measure(Path(p).name, beir_texts(Path(p))) for p in args.beir]
    results += [measure(Path(p).name or p, folder_texts(Path(p), args.limit)) for p in args.folder]
    total = sum(int(r["documents"]) for r in results)  # type: ignore[call-overload]
    flagged = sum(int(r["below_0.3_duckdb_ascii"]) for r in results)  # type: ignore[call-overload]
    summary = {"rule": f"letter_share < {OLD_MIN_LETTER_SHARE}", "documents": total, "flagged": flagged}
    Path(args.out).write_text(json.dumps({"summary": summary, "collections": results}, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
