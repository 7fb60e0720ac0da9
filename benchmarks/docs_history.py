"""Every step of a real docs history on the platform, beside the plain LangChain script, in one run.

Replays commits of a git repository that touched ``--subdir`` (default FastAPI's ``docs/en/docs``, 155 Markdown
files today; pass a clone with ``--repo``, nothing of it is vendored) into one source folder, ``*.md`` only:
every ``--stride``-th of the last ``--steps * --stride`` such commits, oldest first, with a step where nothing
changed after the first and after the last. Each step is measured four ways on that folder:

- platform warm: the source watcher of `ui`/`demo` in this process, from the moment the folder holds the commit
  to the end of the refresh run it started (with nothing changed it starts no run: its comparison is timed);
- platform cold: ``rag-platform refresh --json`` in a child process on a second home over the same folder,
  process wall time (as from cron or Airflow);
- LangChain warm: ``langchain_peer.LangChainScript.step()`` in this process;
- LangChain cold: ``python benchmarks/langchain_peer.py`` in a child process, state kept on disk.

Both platform homes and both LangChain states are built from the first commit before the steps. Writes
benchmarks/results/docs_history.json. Usage: python benchmarks/docs_history.py --repo PATH [--steps 10]
[--stride 3] [--subdir docs/en/docs]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from common import MODEL_CACHE, cli, warm_model_cache, write
from langchain_peer import LangChainScript, langchain_available

PEER = Path(__file__).with_name("langchain_peer.py")


def doc_commits(repo: Path, subdir: str, steps: int, stride: int) -> list[str]:
    """The base commit, then one commit per step, oldest first."""
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "--format=%H", f"-{steps * stride + 1}", "--", subdir],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return list(reversed(log[::stride]))[-(steps + 1) :]


def markdown_at(repo: Path, commit: str, subdir: str) -> dict[str, bytes]:
    """``relative path -> bytes`` of every Markdown file under ``subdir`` at ``commit``."""
    archive = subprocess.run(["git", "-C", str(repo), "archive", commit, subdir], check=True, capture_output=True)
    files = {}
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".md"):
                extracted = tar.extractfile(member)
                if extracted is not None:
                    files[member.name[len(subdir) :].lstrip("/")] = extracted.read()
    return files


def sync(folder: Path, files: dict[str, bytes]) -> dict[str, int]:
    """Make ``folder`` hold exactly ``files``; returns how many were added, modified and deleted."""
    counts = {"added": 0, "modified": 0, "deleted": 0}
    for path in folder.rglob("*.md"):
        if path.relative_to(folder).as_posix() not in files:
            path.unlink()
            counts["deleted"] += 1
    for name, data in files.items():
        path = folder / name
        if path.exists():
            if path.read_bytes() == data:
                continue
            counts["modified"] += 1
        else:
            counts["added"] += 1
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return counts


def peer_cold(state: Path, folder: Path) -> dict[str, Any]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(PEER), str(state), str(folder), str(MODEL_CACHE)], check=True, capture_output=True
    )
    report: dict[str, Any] = json.loads(out.stdout)
    report["wall_seconds"] = round(time.perf_counter() - started, 3)
    return report


def platform_cold(home: Path) -> dict[str, Any]:
    report = cli(home, "refresh")
    return {"wall_seconds": report["wall_seconds"], "run_seconds": report["seconds"], "documents": report["documents"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--subdir", default="docs/en/docs")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--stride", type=int, default=3)
    args = parser.parse_args()
    if not langchain_available():
        raise SystemExit("needs langchain-core and langchain-text-splitters: pip install them first")
    warm_model_cache()
    commits = doc_commits(args.repo, args.subdir, args.steps, args.stride)
    schedule = [commits[1], commits[1], *commits[2:], commits[-1]]
    with tempfile.TemporaryDirectory(prefix="rag-docs-history-") as tmp:
        root = Path(tmp)
        folder, warm_home, cold_home, state = root / "docs", root / "warm", root / "cold", root / "peer"
        folder.mkdir()
        base = markdown_at(args.repo, commits[0], args.subdir)
        sync(folder, base)
        build = {"platform": cli(warm_home, "refresh", "--source", str(folder))["wall_seconds"]}
        build["platform_second_home"] = cli(cold_home, "refresh", "--source", str(folder))["wall_seconds"]
        build["langchain_cold"] = peer_cold(state, folder)["wall_seconds"]
        os.environ.update(
            {"RAG_PLATFORM_HOME": str(warm_home), "RAG_PLATFORM__EMBEDDING__EXPORT_DIR": str(MODEL_CACHE)}
        )
        from rag_platform.config import load_settings
        from rag_platform.defs.watcher import SourceWatcher

        peer = LangChainScript(folder, export_dir=MODEL_CACHE)
        build["langchain_warm"] = peer.step()["seconds"]
        watcher = SourceWatcher(load_settings(warm_home), rescan_s=3600)
        watcher.start()
        watcher.poll(0.5)
        steps = []
        try:
            for commit in schedule:
                changed = sync(folder, markdown_at(args.repo, commit, args.subdir))
                step: dict[str, Any] = {"commit": commit[:10], "changed": changed}
                started = time.perf_counter()
                if any(changed.values()):
                    run = watcher.poll(10.0)
                    assert run is not None and run.outcome.success, run
                    seconds = round(time.perf_counter() - started, 3)
                    step["platform_warm"] = {"seconds": seconds, "run": True, "stages": run.outcome.stage_seconds}
                else:
                    assert watcher.refresh_if_pending() is None
                    step["platform_warm"] = {"seconds": round(time.perf_counter() - started, 3), "run": False}
                step["platform_cold"] = platform_cold(cold_home)
                step["langchain_warm"] = peer.step()
                step["langchain_cold"] = peer_cold(state, folder)
                step["load_average_1m"] = round(os.getloadavg()[0], 2)
                steps.append(step)
                print(json.dumps(step), file=sys.stderr)
        finally:
            watcher.stop()
    for step in steps:
        step["platform_warm_beats_langchain_warm"] = (
            step["platform_warm"]["seconds"] < step["langchain_warm"]["seconds"]
        )
        step["platform_cold_beats_langchain_cold"] = (
            step["platform_cold"]["wall_seconds"] < step["langchain_cold"]["wall_seconds"]
        )
    report = {
        "repo": args.repo.name,
        "subdir": args.subdir,
        "commits": [c[:10] for c in commits],
        "files_at_base": len(base),
        "build_seconds": build,
        "steps": steps,
        "warm_steps_won": sum(s["platform_warm_beats_langchain_warm"] for s in steps),
        "cold_steps_won": sum(s["platform_cold_beats_langchain_cold"] for s in steps),
        "step_count": len(steps),
    }
    print(write("docs_history.json", report))


if __name__ == "__main__":
    main()
