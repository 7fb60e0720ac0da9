"""Fixed cost per run, by stage: a refresh with nothing to do and a refresh after one document changed, on
the same home in one run (seeded synthetic Markdown, 155 documents by default, the size of the FastAPI docs),
on the two paths users run, beside a plain LangChain ``index(cleanup="full")`` script on the same files.

- warm (`ui`/`demo`): the source watcher in this long-lived process (model, dbt and GX loaded once) runs the
  refresh job in-process when a file changes; with nothing changed it starts no run at all (its cost is the
  comparison of the sources with the warehouse). A no-op run of the job in the same warm process is measured
  too: what a sensor- or UI-launched run costs once its process is up.
- cold (`rag-platform refresh --json` in a child process, as from cron or Airflow): the Dagster run's own
  duration (start to end, from the instance) beside the process wall time and the per-step seconds.
- LangChain (``langchain_peer.py``; reported as missing without langchain-core): the plain ``index(...,
  cleanup="full")`` script with the same embedder, in this warm process, each step timed whole.

Writes benchmarks/results/run_cost[-N].json. Usage: python benchmarks/run_cost.py [--documents 155]
[--changes 3] [--no-cold] [--no-langchain]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import MODEL_CACHE, cli, warm_model_cache, write
from langchain_peer import LangChainScript, langchain_available

from rag_platform.synthetic import generate_corpus


def run_seconds(home: Path, run_id: str) -> float | None:
    """The Dagster run's duration, from its record in the platform's instance."""
    from rag_platform.defs.sensors import run_seconds as seconds

    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    return seconds(run_id)


def cold_sample(home: Path) -> dict[str, Any]:
    report = cli(home, "refresh")
    return {
        "run_seconds": run_seconds(home, report["run_id"]),
        "wall_seconds": report["wall_seconds"],
        "stages": report["stages"],
        "documents": report["documents"],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def change(path: Path, n: int) -> None:
    path.write_text(path.read_text() + f"\n\nOne more paragraph about incremental refresh number {n}.\n")


def warm_path(home: Path, files: list[Path], changes: int, langchain: LangChainScript | None) -> dict[str, Any]:
    """The watcher's runs in this process, each beside the LangChain script's step on the same files."""
    from rag_platform.config import load_settings
    from rag_platform.defs.runner import execute_refresh
    from rag_platform.defs.watcher import SourceWatcher

    settings = load_settings(home)
    watcher = SourceWatcher(settings, rescan_s=3600)
    started = time.perf_counter()
    watcher.start()
    warm_up_s = round(time.perf_counter() - started, 3)
    out: dict[str, Any] = {"warm_up_seconds": warm_up_s, "noop_check": [], "noop_run": [], "one_change": []}
    try:
        watcher.poll(0.5)  # the look at start: nothing to do after the build
        lc_noop = []
        for _ in range(3):
            started = time.perf_counter()
            assert watcher.refresh_if_pending() is None
            out["noop_check"].append(round(time.perf_counter() - started, 3))
            outcome = execute_refresh(settings, False, trigger="bench", log_level="CRITICAL")
            out["noop_run"].append({"run_seconds": run_seconds(home, outcome.run_id), "stages": outcome.stage_seconds})
            if langchain is not None:
                lc_noop.append(langchain.step())
        lc_change = []
        for n in range(changes):
            change(files[n + 1], n)
            started = time.perf_counter()
            run = watcher.poll(5.0)
            wall = round(time.perf_counter() - started, 3)
            assert run is not None and run.outcome.success, run
            out["one_change"].append(
                {
                    "run_seconds": run_seconds(home, run.outcome.run_id),
                    "write_to_run_end_seconds": wall,
                    "stages": run.outcome.stage_seconds,
                    "changes": run.changes,
                    "load_average_1m": round(os.getloadavg()[0], 2),
                }
            )
            if langchain is not None:
                lc_change.append(langchain.step())
    finally:
        watcher.stop()
    out["median_noop_check_seconds"] = statistics.median(out["noop_check"])
    out["median_noop_run_seconds"] = statistics.median(s["run_seconds"] or 0.0 for s in out["noop_run"])
    out["median_one_change_run_seconds"] = statistics.median(s["run_seconds"] or 0.0 for s in out["one_change"])
    if langchain is not None:
        out["langchain"] = {
            "noop": lc_noop,
            "one_change": lc_change,
            "median_noop_seconds": statistics.median(s["seconds"] for s in lc_noop),
            "median_one_change_seconds": statistics.median(s["seconds"] for s in lc_change),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=155)
    parser.add_argument("--changes", type=int, default=3)
    parser.add_argument("--no-cold", action="store_true", help="skip the CLI child-process samples")
    parser.add_argument("--no-langchain", action="store_true", help="skip the LangChain script (its build)")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the corpus and home here; a second run with the same --documents reuses "
        "them, so a large corpus is built once (and the measurement can wait for a quiet machine)",
    )
    args = parser.parse_args()
    warm_model_cache()
    with contextlib.ExitStack() as stack:
        tmp = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rag-run-cost-")))
        tmp = tmp / str(args.documents)  # one corpus and home per size, so sizes never share a folder
        tmp.mkdir(parents=True, exist_ok=True)
        home, folder = tmp / "home", tmp / "corpus"
        built = tmp / "build.json"
        if built.exists():
            files = sorted(folder.rglob("*.md"))
            build = json.loads(built.read_text())
        else:
            files = generate_corpus(folder, args.documents)
            build = cli(home, "refresh", "--source", str(folder))
            built.write_text(json.dumps(build))
        os.environ.update({"RAG_PLATFORM_HOME": str(home), "RAG_PLATFORM__EMBEDDING__EXPORT_DIR": str(MODEL_CACHE)})
        langchain = None
        langchain_build = None
        if langchain_available() and not args.no_langchain:
            langchain = LangChainScript(folder, export_dir=MODEL_CACHE)
            langchain_build = langchain.step()
        cold: dict[str, Any] | None = None
        if not args.no_cold:
            noop = [cold_sample(home) for _ in range(2)]
            change(files[0], -1)
            cold = {
                "noop": noop,
                "one_document_changed": cold_sample(home),
                "median_noop_run_seconds": statistics.median(s["run_seconds"] or 0.0 for s in noop),
            }
            if langchain is not None:
                langchain.step()  # takes the same change, so both sides start the warm steps level
        warm = warm_path(home, files, args.changes, langchain)
    report = {
        "documents": args.documents,
        "build_wall_seconds": build["wall_seconds"],
        "langchain_build": langchain_build
        if langchain is not None
        else "not measured (--no-langchain or not installed)",
        "warm": warm,
        "cold": cold,
        "goal": {"noop_run_seconds": 1.0 if args.documents <= 155 else 3.0, "one_change_run_seconds": 3.0},
    }
    name = "run_cost.json" if args.documents == 155 else f"run_cost-{args.documents}.json"
    print(write(name, report))
    print(
        "warm: noop check",
        warm["median_noop_check_seconds"],
        "noop run",
        warm["median_noop_run_seconds"],
        "one change run",
        warm["median_one_change_run_seconds"],
        "langchain",
        {k: v for k, v in warm.get("langchain", {}).items() if k.startswith("median")},
        "cold",
        cold and cold["median_noop_run_seconds"],
        cold and cold["one_document_changed"]["run_seconds"],
    )


if __name__ == "__main__":
    main()
