"""Change -> searchable latency with `rag-platform ui` running (webserver, daemon, sensor, and the ui's warm
source watcher), as a user sees it, with default settings.

Each corpus is indexed once through `rag-platform refresh`; then `ui` runs and each change (add, modify,
delete, rename, round-robin) is written to the source folder while a keyword search for the change's own
unique token is polled every 0.1 s until it reflects the change (found in the new file, found under the new
path, or gone). Per kind: p50/p95 seconds from the write to that search hit, and the refresh runs started
by trigger (one per change is the goal: none for no change). Corpora: the 5-document test corpus and a
150-file synthetic docs tree. Beside them, in the same run, the path it replaces: `ui` with
`sensor.watch = false` (the daemon's sensor every `sensor.interval_s`, a new process per run) on the test
corpus. Writes benchmarks/results/freshness_latency.json.

Usage: python benchmarks/freshness_latency.py [--per-kind 20] [--docs 150] [--docs-per-kind 20]
[--sensor-per-kind 3]
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
from collections import Counter
from pathlib import Path
from typing import Any

from common import MODEL_CACHE, cli, warm_model_cache, write

from rag_platform.synthetic import generate_corpus

CORPUS = Path(__file__).resolve().parents[1] / "rag_platform_tests" / "data" / "corpus"
KINDS = ("add", "modify", "delete", "rename")


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
        self.modified = sorted(folder.rglob("*.md"))[0]

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
            target = self.modified
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


def runs_by_trigger(home: Path) -> Counter[str]:
    """Refresh runs in the home's Dagster instance, by their ``rag/trigger`` tag."""
    from rag_platform.defs.sensors import runs_by_trigger as count

    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    return Counter(count())


def summarize(samples: dict[str, list[float]]) -> dict[str, Any]:
    every = [v for values in samples.values() for v in values]
    return {
        "seconds": {
            kind: {"p50": percentile(v, 0.5), "p95": percentile(v, 0.95), "n": len(v)}
            for kind, v in samples.items()
            if v
        },
        "all": {"p50": percentile(every, 0.5), "p95": percentile(every, 0.95), "n": len(every)} if every else None,
        "mean_seconds": round(statistics.mean(every), 3) if every else None,
    }


def measure(corpus_name: str, make_corpus: Any, per_kind: int, watch: bool, timeout_s: float) -> dict[str, Any]:
    """Index a fresh corpus, start `ui`, apply ``per_kind`` changes of each kind and time each to search."""
    with tempfile.TemporaryDirectory(prefix="rag-freshness-") as tmp:
        home, folder = Path(tmp) / "home", Path(tmp) / "corpus"
        make_corpus(folder)
        documents = len(list(folder.rglob("*.md")))
        cli(home, "refresh", "--source", str(folder))
        env = {
            **os.environ,
            "RAG_PLATFORM_HOME": str(home),
            "RAG_PLATFORM__EMBEDDING__EXPORT_DIR": str(MODEL_CACHE),
            "RAG_PLATFORM__SENSOR__WATCH": "true" if watch else "false",
        }
        env.pop("DAGSTER_HOME", None)
        os.environ.update({k: env[k] for k in ("RAG_PLATFORM_HOME", "RAG_PLATFORM__EMBEDDING__EXPORT_DIR")})
        from rag_platform.backends import make_backend
        from rag_platform.config import load_settings

        settings = load_settings(home)
        backend = make_backend(settings)
        before = runs_by_trigger(home)
        ui = subprocess.Popen(
            [sys.executable, "-m", "rag_platform.cli", "ui", "--port", str(free_port())],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(40)  # webserver, daemon, code server, the watcher's warm-up and the sensor's first tick
        idle = runs_by_trigger(home) - before
        corpus = Corpus(folder)
        samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
        timeouts = 0
        loads = [round(os.getloadavg()[0], 2)]
        try:
            for i in range(per_kind * len(KINDS)):
                kind = KINDS[i % len(KINDS)]
                token, name = corpus.apply(kind)
                started = time.monotonic()
                while not reflected(backend, settings.index.alias, token, name):
                    if time.monotonic() - started > timeout_s:
                        timeouts += 1
                        break
                    time.sleep(0.1)
                else:
                    samples[kind].append(time.monotonic() - started)
                loads.append(round(os.getloadavg()[0], 2))
            time.sleep(5 if watch else 2 * settings.sensor.interval_s)
            runs = runs_by_trigger(home) - before - idle
        finally:
            ui.send_signal(signal.SIGTERM)
            ui.wait(timeout=60)
            backend.close()
    return {
        "corpus": corpus_name,
        "documents": documents,
        "path": "ui with its watcher (default settings)" if watch else "ui, sensor.watch = false (sensor only)",
        "settings": {"sensor.watch": watch, "sensor.interval_s": settings.sensor.interval_s},
        "changes_per_kind": per_kind,
        **summarize(samples),
        "timeouts": timeouts,
        "refresh_runs": dict(runs),
        "runs_while_idle_40s": sum(idle.values()),
        "load_average_1m": {"min": min(loads), "max": max(loads)},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-kind", type=int, default=20)
    parser.add_argument("--sensor-per-kind", type=int, default=3, help="changes per kind on the sensor-only path")
    parser.add_argument("--docs", type=int, default=150, help="files in the synthetic docs tree (0: skip it)")
    parser.add_argument("--docs-per-kind", type=int, default=20, help="changes per kind on the docs tree")
    parser.add_argument("--timeout-s", type=float, default=180.0)
    args = parser.parse_args()
    warm_model_cache()

    def tiny(folder: Path) -> None:
        shutil.copytree(CORPUS, folder)

    def docs(folder: Path) -> None:
        generate_corpus(folder, args.docs)

    tiny_name = "rag_platform_tests/data/corpus (5 documents)"
    results = [measure(tiny_name, tiny, args.per_kind, True, args.timeout_s)]
    if args.docs:
        results.append(
            measure(f"synthetic docs tree ({args.docs} files)", docs, args.docs_per_kind, True, args.timeout_s)
        )
    if args.sensor_per_kind:
        results.append(measure(tiny_name, tiny, args.sensor_per_kind, False, args.timeout_s))
    report = {"results": results, "goal": {"p50": 5.0, "p95": 10.0}}
    print(write("freshness_latency.json", report))
    for r in results:
        print(r["corpus"], r["path"], r["all"], "runs", r["refresh_runs"], "timeouts", r["timeouts"])


if __name__ == "__main__":
    main()
