"""Parse time per MB as pathological inputs grow: flat means linear time, so no file can stall a refresh.

Each family is a shape an attacker (or an accident) writes: a heading line of spaces that ends in a way the old
heading regex could not match, thousands of such lines, setext-like underlines, HTML nested ever deeper, HTML
whose end tags never match, one line with no newline, and ordinary Markdown as the baseline. Every input goes
through ``parse_document`` (decode, title, HTML rendering) at 1/8 to 2 MB. The old heading regex is timed
beside it on a kilobyte at most: it is super-linear (x8 per doubling), so 20 KB would run for hours.

Writes benchmarks/results/parse_scaling.json (under a minute). Usage: python benchmarks/parse_scaling.py
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from common import write

from rag_platform.parsing import parse_document

MB = 1_000_000
SIZES = [MB // 8, MB // 4, MB // 2, MB, 2 * MB]
OLD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def repeat(unit: str, size: int) -> str:
    return unit * max(size // len(unit), 1)


def nested(open_tag: str, close_tag: str, size: int) -> str:
    depth = size // (len(open_tag) + len(close_tag))
    return open_tag * depth + "<p>bottom</p>" + close_tag * depth


FAMILIES: dict[str, tuple[str, Callable[[int], str]]] = {
    "markdown_baseline": (".md", lambda n: repeat("## Section\n\nSome prose about glaciers and tides.\n\n- item\n", n)),
    "one_heading_of_spaces": (".md", lambda n: "# x" + " " * n + "#:\n\nbody\n"),
    # No line below is a heading, so the title scan reads every line before falling back to the file name.
    "near_heading_lines": (".md", lambda n: repeat("####### x" + " " * 2_000 + "#:\n", n)),
    "setext_like_underlines": (".md", lambda n: repeat(" a\n" + "=" * 1_000 + " " * 1_000 + ":\n", n)),
    "one_line_no_newline": (".txt", lambda n: "word " * (n // 5)),
    "html_nested_divs": (".html", lambda n: nested("<div>", "</div>", n)),
    "html_unmatched_end_tags": (".html", lambda n: nested("<b>", "</i>", n)),
}


def seconds(function: Callable[[], object], repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    families = {}
    for name, (suffix, make) in FAMILIES.items():
        rows = []
        for size in SIZES:
            data = make(size).encode()
            name_ = "doc" + suffix
            took = seconds(lambda data=data, name_=name_: parse_document(data, name_), 1 if suffix == ".html" else 3)
            rows.append(
                {"bytes": len(data), "seconds": round(took, 4), "seconds_per_mb": round(took / (len(data) / MB), 4)}
            )
        per_mb = [r["seconds_per_mb"] for r in rows]
        families[name] = {
            "runs": rows,
            # Seconds per MB at the largest size over the smallest: ~1 is linear, 16 would be quadratic here.
            "growth_of_seconds_per_mb": round(per_mb[-1] / max(per_mb[0], 1e-9), 2),
        }
        print(f"{name}: {per_mb} s/MB", flush=True)
    old = []
    for spaces in (250, 500, 1_000):
        line = "# x" + " " * spaces + "#:\n"
        old.append({"spaces": spaces, "seconds": round(seconds(lambda line=line: OLD_HEADING.search(line), 1), 4)})
    print(f"old heading regex: {old}")
    write("parse_scaling.json", {"sizes_bytes": SIZES, "families": families, "old_heading_regex": old})


if __name__ == "__main__":
    main()
