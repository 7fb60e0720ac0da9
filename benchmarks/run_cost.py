"""Fixed cost per run, by stage: refreshes with nothing to do beside a refresh after one document changed, on
the same home in one run (seeded synthetic Markdown, 155 documents by default, the size of the FastAPI docs).

Each refresh is the `rag-platform refresh --json` CLI in a child process; its Dagster run's own duration
(start to end, from the instance) is reported beside the process wall time and the per-step seconds.
Writes benchmarks/results/run_cost.json. Usage: python benchmarks/run_cost.py [--documents 155] [--noop 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from common import cli, warm_model_cache, write

from rag_platform.synthetic import generate_corpus


def run_seconds(home: Path, run_id: str) -> float | None:
    """The Dagster run's duration, from its record in the platform's instance."""
    from rag_platform.defs.sensors import run_seconds as seconds

    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    return seconds(run_id)


def sample(home: Path) -> dict[str, Any]:
    report = cli(home, "refresh")
    return {
        "run_seconds": run_seconds(home, report["run_id"]),
        "wall_seconds": report["wall_seconds"],
        "stages": report["stages"],
        "unchanged_since": report.get("unchanged_since"),
        "documents": report["documents"],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=155)
    parser.add_argument("--noop", type=int, default=3)
    args = parser.parse_args()
    warm_model_cache()
    with tempfile.TemporaryDirectory(prefix="rag-run-cost-") as tmp:
        home, folder = Path(tmp) / "home", Path(tmp) / "corpus"
        files = generate_corpus(folder, args.documents)
        build = cli(home, "refresh", "--source", str(folder))
        noop = [sample(home) for _ in range(args.noop)]
        files[0].write_text(files[0].read_text() + "\n\nOne more paragraph about incremental refreshes.\n")
        one_change = sample(home)
        noop_after = sample(home)
    report = {
        "documents": args.documents,
        "build_wall_seconds": build["wall_seconds"],
        "noop": [*noop, noop_after],
        "one_document_changed": one_change,
        "median_noop_run_seconds": statistics.median(s["run_seconds"] or 0.0 for s in [*noop, noop_after]),
        "median_noop_wall_seconds": statistics.median(s["wall_seconds"] for s in [*noop, noop_after]),
        "goal": {"noop_run_seconds": 1.0, "one_change_run_seconds": 3.0},
    }
    print(write("run_cost.json", report))
    print(
        "noop run s",
        [s["run_seconds"] for s in report["noop"]],
        "one change run s",
        one_change["run_seconds"],
        one_change["stages"],
    )


if __name__ == "__main__":
    main()
