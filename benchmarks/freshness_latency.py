"""Change -> searchable latency with `rag-platform ui` running (webserver + daemon + sensor), as a user sees it.

The test fixture corpus is indexed once through `rag-platform refresh`; then `ui` runs and each change (add,
modify, delete, rename, round-robin) is written to the source folder while a keyword search for the change's
own unique token is polled every 0.2 s until it reflects the change (found in the new file, found under the
new path, or gone). Per kind: p50/p95 seconds from the write to that search hit, and the refresh runs started
(one per change is the goal: none for no change). Writes benchmarks/results/freshness_latency.json.

Usage: python benchmarks/freshness_latency.py [--per-kind 20] [--interval-s 1] [--dequeue-s 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import MODEL_CACHE, cli, warm_model_cache, write

CORPUS = Path(__file__).resolve().parents[1] / "rag_platform_tests" / "data" / "corpus"
KINDS = ("add", "modify", "delete", "rename")
DAGSTER_YAML = """telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 1
  dequeue_interval_seconds: {dequeue}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))], 3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Corpus:
    """Applies one change of a kind and says how to tell it reached the index."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.added: list[tuple[Path, str]] = []

    def token(self) -> str:
        return "zq" + uuid.uuid4().hex[:10]

    def apply(self, kind: str) -> tuple[str, str | None]:
        """Returns (token to search, the file name that must hold it; None: the token must be gone)."""
        if kind in ("delete", "rename") and not self.added:
            kind = "add"
        if kind == "add":
            token = self.token()
            path = self.folder / f"note-{token}.md"
            path.write_text(f"# Note {token}\n\nA new page about {token} and tidal schedules.\n")
            self.added.append((path, token))
            return token, path.name
        if kind == "modify":
            token = self.token()
            target = self.folder / "baking.md"
            target.write_text(target.read_text() + f"\nAlso {token} proofing notes.\n")
            return token, target.name
        path, token = self.added.pop(0)
        if kind == "delete":
            path.unlink()
            return token, None
        moved = path.with_name(f"moved-{path.name}")
        path.rename(moved)
        self.added.append((moved, token))
        return token, moved.name


def reflected(backend: Any, alias: str, token: str, file_name: str | None) -> bool:
    version = backend.resolve_alias(alias)
    if version is None:
        return False
    hits = backend.search_keyword(version, token, 3)
    names = [Path(h.source).name for h in hits if token in h.text]
    return file_name in names if file_name is not None else not names


def refresh_runs(home: Path) -> int:
    import duckdb

    snapshot = home / "snapshot.duckdb"
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        return int(con.execute("SELECT count(*) FROM runs").fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-kind", type=int, default=20)
    parser.add_argument("--interval-s", type=int, default=1, help="sensor.interval_s")
    parser.add_argument("--dequeue-s", type=int, default=1, help="run queue dequeue_interval_seconds")
    parser.add_argument("--timeout-s", type=float, default=180.0)
    args = parser.parse_args()
    warm_model_cache()
    with tempfile.TemporaryDirectory(prefix="rag-freshness-") as tmp:
        home, folder = Path(tmp) / "home", Path(tmp) / "corpus"
        shutil.copytree(CORPUS, folder)
        (home / "dagster").mkdir(parents=True)
        (home / "dagster" / "dagster.yaml").write_text(DAGSTER_YAML.format(dequeue=args.dequeue_s))
        cli(home, "refresh", "--source", str(folder))
        env = {
            **os.environ,
            "RAG_PLATFORM_HOME": str(home),
            "RAG_PLATFORM__EMBEDDING__EXPORT_DIR": str(MODEL_CACHE),
            "RAG_PLATFORM__SENSOR__INTERVAL_S": str(args.interval_s),
        }
        env.pop("DAGSTER_HOME", None)
        os.environ.update({k: env[k] for k in ("RAG_PLATFORM_HOME", "RAG_PLATFORM__EMBEDDING__EXPORT_DIR")})
        from rag_platform.backends import make_backend
        from rag_platform.config import load_settings

        settings = load_settings(home)
        backend = make_backend(settings)
        runs_before = refresh_runs(home)
        port = free_port()
        ui = subprocess.Popen(
            [sys.executable, "-m", "rag_platform.cli", "ui", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(20)  # daemon, code server and the sensor's first tick
        idle_runs = refresh_runs(home) - runs_before
        corpus = Corpus(folder)
        samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
        timeouts = 0
        loads = [round(os.getloadavg()[0], 2)]
        try:
            for i in range(args.per_kind * len(KINDS)):
                kind = KINDS[i % len(KINDS)]
                token, name = corpus.apply(kind)
                started = time.monotonic()
                while not reflected(backend, settings.index.alias, token, name):
                    if time.monotonic() - started > args.timeout_s:
                        timeouts += 1
                        break
                    time.sleep(0.2)
                else:
                    samples[kind].append(time.monotonic() - started)
                loads.append(round(os.getloadavg()[0], 2))
            time.sleep(max(5, 3 * args.interval_s))
            runs = refresh_runs(home) - runs_before - idle_runs
        finally:
            ui.send_signal(signal.SIGTERM)
            ui.wait(timeout=60)
    every = [v for values in samples.values() for v in values]
    report: dict[str, Any] = {
        "corpus": "rag_platform_tests/data/corpus (5 documents)",
        "settings": {"sensor.interval_s": args.interval_s, "dequeue_interval_seconds": args.dequeue_s},
        "changes_per_kind": args.per_kind,
        "seconds": {
            kind: {"p50": percentile(v, 0.5), "p95": percentile(v, 0.95), "n": len(v)}
            for kind, v in samples.items()
            if v
        },
        "all": {"p50": percentile(every, 0.5), "p95": percentile(every, 0.95), "n": len(every)} if every else None,
        "mean_seconds": round(statistics.mean(every), 3) if every else None,
        "timeouts": timeouts,
        "refresh_runs": runs,
        "runs_while_idle_20s": idle_runs,
        "goal": {"p50": 5.0, "p95": 10.0},
        "load_average_1m": {"min": min(loads), "max": max(loads)},
    }
    print(write("freshness_latency.json", report))
    print(report["seconds"], report["all"], "runs", runs, "timeouts", timeouts)


if __name__ == "__main__":
    main()
