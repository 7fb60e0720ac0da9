"""Cold search: a whole `rag-platform search --json` process beside a plain sentence-transformers script that
loads the same model and embeds the same query, alternated in one run so both see the same machine load.

The index is the test fixture corpus, built once through `rag-platform refresh` (not timed). Each sample is
a fresh process, wall time from spawn to exit. Writes benchmarks/results/cold_search.json.
Usage: python benchmarks/cold_search.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import MODEL_CACHE, cli, warm_model_cache, write

CORPUS = Path(__file__).resolve().parents[1] / "rag_platform_tests" / "data" / "corpus"
QUERY = "how do I roll back an index"
PLAIN_SCRIPT = """
from sentence_transformers import SentenceTransformer
from rag_platform.embedding import resolve_model_path
SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu").encode([{query!r}])
"""
IMPORTS_SCRIPT = """
import json, sys
from rag_platform.cli import main
with open(sys.argv[1], "w") as out:
    main(["search", {query!r}, "--json"])
    json.dump(sorted(m for m in ("torch", "sentence_transformers", "transformers", "dagster") if m in sys.modules), out)
"""


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    warm_model_cache()
    with tempfile.TemporaryDirectory(prefix="rag-cold-search-") as tmp:
        home, corpus = Path(tmp) / "home", Path(tmp) / "corpus"
        shutil.copytree(CORPUS, corpus)
        cli(home, "refresh", "--source", str(corpus))
        env = {**os.environ, "RAG_PLATFORM_HOME": str(home), "RAG_PLATFORM__EMBEDDING__EXPORT_DIR": str(MODEL_CACHE)}
        env.pop("DAGSTER_HOME", None)
        search = [sys.executable, "-m", "rag_platform.cli", "search", QUERY, "--json"]
        plain = [sys.executable, "-c", PLAIN_SCRIPT.format(query=QUERY)]
        samples: dict[str, list[float]] = {"rag_platform_search": [], "plain_sentence_transformers": []}
        loads = [load_average()]
        timed(search, env)  # page cache warm for both, so neither pays the first disk read
        timed(plain, env)
        for _ in range(args.rounds):
            samples["rag_platform_search"].append(timed(search, env))
            samples["plain_sentence_transformers"].append(timed(plain, env))
            loads.append(load_average())
        modules_file = Path(tmp) / "modules.json"
        subprocess.run(
            [sys.executable, "-c", IMPORTS_SCRIPT.format(query=QUERY), str(modules_file)],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        heavy_modules = json.loads(modules_file.read_text())
    medians = {name: round(statistics.median(values), 3) for name, values in samples.items()}
    report: dict[str, Any] = {
        "query": QUERY,
        "rounds": args.rounds,
        "median_seconds": medians,
        "samples_seconds": {name: [round(v, 3) for v in values] for name, values in samples.items()},
        "ratio": round(medians["rag_platform_search"] / medians["plain_sentence_transformers"], 3),
        "goal_ratio": 0.4,
        "search_process_imports": heavy_modules,
        "load_average_1m": {"min": min(loads), "max": max(loads)},
    }
    print(write("cold_search.json", report))
    print(report["median_seconds"], "ratio", report["ratio"], "load", report["load_average_1m"])


if __name__ == "__main__":
    main()
