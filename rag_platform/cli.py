"""The ``rag-platform`` console script: parse arguments, call the domain or the Dagster job, print results.

Exit status: 0 success, 2 bad usage or bad input, 3 a refresh a quality gate blocked (the served index unchanged),
1 any other failure. Errors are one line on stderr
(a traceback only with ``--debug``). With ``--json`` stdout holds exactly one JSON document.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag_platform.config import ConfigError, Settings, load_settings
from rag_platform.environment import prepare_environment
from rag_platform.search_request import MODES, RERANKERS
from rag_platform.settings_checks import check_settings


class UsageError(Exception):
    """Bad input from the user: exit status 2."""


class CommandFailed(Exception):
    """The command ran but did not succeed: exit status 1, with a result still printed when present."""

    exit_status = 1

    def __init__(self, message: str, result: Any = None):
        super().__init__(message)
        self.result = result


class RefreshBlocked(CommandFailed):
    """A quality gate blocked the refresh; the served index is unchanged: exit status 3 (a scheduler should not
    retry it: the same input blocks again)."""

    exit_status = 3


TRIGGER_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,31}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- commands ---------------------------------------------------------------------------------------------


def cmd_refresh(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from rag_platform import warehouse
    from rag_platform.ingest import register_source
    from rag_platform.locking import refresh_lock
    from rag_platform.sources import SourceError, validate_source

    if args.source:
        try:
            source = validate_source(args.source)
        except SourceError as exc:
            raise UsageError(str(exc)) from None
        with refresh_lock(settings.lock_path, on_wait=log):
            with warehouse.writer(settings) as con:
                added = register_source(con, source)
            if added:
                warehouse.export_snapshot(settings)  # the sensor reads sources from the snapshot
                log(f"added source {source}")
    trigger = getattr(args, "trigger", None) or "cli"
    if not re.fullmatch(TRIGGER_PATTERN, trigger):
        raise UsageError(f"--trigger must match {TRIGGER_PATTERN} (e.g. airflow), got {trigger!r}")
    return run_refresh_job(settings, full=args.full, debug=getattr(args, "debug", False), trigger=trigger)


def run_refresh_job(settings: Settings, full: bool, debug: bool = False, trigger: str = "cli") -> dict[str, Any]:
    """Run the refresh job in-process against the platform's Dagster instance, then summarise it."""
    from rag_platform.defs.runner import execute_refresh
    from rag_platform.pipeline.run_record import run_summary

    started = time.perf_counter()
    # Without --debug, Dagster's console log stays quiet: the run's event log is stored, and failures are
    # reported below as one line.
    outcome = execute_refresh(settings, full, trigger=trigger, log_level="DEBUG" if debug else "CRITICAL")
    summary = {
        **run_summary(settings, outcome.run_id),
        "seconds": round(time.perf_counter() - started, 3),
        "stages": outcome.stage_seconds,
        "full": full,
    }
    if not outcome.success:
        failed_gates = [f"{name}: {g['message']}" for name, g in summary["gates"].items() if not g["passed"]]
        if failed_gates:
            raise RefreshBlocked("refresh blocked by quality gate " + "; ".join(failed_gates), summary)
        raise CommandFailed(f"refresh failed: {outcome.failure}", summary)
    return summary


def _searcher(settings: Settings) -> Any:
    from rag_platform.retrieval import Searcher

    return Searcher.from_settings(settings)


def _filters(args: argparse.Namespace) -> dict[str, list[str]] | None:
    """``--filter FIELD=VALUE`` options (repeatable) as a filters mapping, shared by search and ask."""
    filters: dict[str, list[str]] | None = None
    if args.filter:
        filters = {}
        for item in args.filter:
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"--filter expects FIELD=VALUE, got {item!r}")
            filters.setdefault(key, []).append(value)
    return filters


def cmd_search(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from rag_platform.search_request import SearchInputError, SearchRequest

    filters = _filters(args)
    try:
        request = SearchRequest(
            query=args.query,
            k=args.k,
            mode=args.mode,
            rerank=args.rerank,
            filters=filters,
            group_by_document=args.group_by_document,
        )
        return _searcher(settings).search(request)  # type: ignore[no-any-return]
    except SearchInputError as exc:
        raise UsageError(str(exc)) from None


def cmd_ask(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from rag_platform.answering import Answerer, AnswerInputError, AskRequest

    request = AskRequest(args.question, k=args.k, mode=args.mode, rerank=args.rerank, filters=_filters(args))
    try:
        return Answerer(settings).ask(request)
    except AnswerInputError as exc:
        raise UsageError(str(exc)) from None


def cmd_status(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from rag_platform.backends import make_backend
    from rag_platform.lineage import status

    return status(settings, make_backend(settings))


def cmd_audit(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from rag_platform.lineage import audit

    record = audit(settings, args.id)
    if record is None:
        raise UsageError(f"unknown chunk or document id {args.id!r}")
    return record


def cmd_config_show(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    return settings.as_dict()


def cmd_sources_list(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from rag_platform import warehouse

    with warehouse.reader(settings) as con:
        sources = [r[0] for r in con.execute("SELECT path FROM sources ORDER BY path").fetchall()] if con else []
    return {"sources": sources}


def cmd_sources_remove(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from rag_platform import warehouse
    from rag_platform.ingest import remove_source
    from rag_platform.locking import refresh_lock

    path = Path(args.path).expanduser().resolve()
    with refresh_lock(settings.lock_path, on_wait=log), warehouse.writer(settings) as con:
        removed = remove_source(con, path)
    if not removed:
        raise UsageError(f"{args.path} is not a registered source")
    warehouse.export_snapshot(settings)
    return {"removed": str(path), "note": "its documents leave the index at the next refresh"}


def cmd_index_list(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from rag_platform.versions import list_versions

    return {"alias": settings.index.alias, "versions": list_versions(settings)}


def cmd_index_rollback(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from rag_platform.versions import VersionError, rollback

    try:
        return rollback(settings, args.version)
    except VersionError as exc:
        raise UsageError(str(exc)) from None


def cmd_eval(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from rag_platform.defs.evaluation import run_evaluation
    from rag_platform.evaluation import DatasetError

    dataset = args.dataset or settings.eval.dataset
    if not dataset:
        raise UsageError("eval needs --dataset DIR (or eval.dataset in config)")
    try:
        return run_evaluation(settings, Path(dataset), run_out=Path(args.run_out) if args.run_out else None, log=log)
    except DatasetError as exc:
        raise UsageError(str(exc)) from None


def cmd_finetune(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from rag_platform.defs.finetune_command import FinetuneError, run_finetune

    if args.budget_s is not None and args.budget_s < 1:
        raise UsageError(f"--budget-s must be at least 1, got {args.budget_s}")
    try:
        result = run_finetune(settings, args.budget_s, log_level="DEBUG" if args.debug else "CRITICAL")
    except FinetuneError as exc:
        raise UsageError(str(exc)) from None
    if result["blocked_by"]:
        raise RefreshBlocked("candidate blocked by quality gate " + ", ".join(result["blocked_by"]), result)
    return result


def cmd_benchmark_embed(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from rag_platform.embed_benchmark import benchmark_backends

    return benchmark_backends(settings, args.chunks, log=log)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    import uvicorn

    from rag_platform.api.app import create_app
    from rag_platform.retrieval import Searcher

    _stop_on_sigterm()
    searcher = Searcher.from_settings(settings)
    searcher.warm()  # before listening: /health answers only once a search is fast
    log(f"query API on http://{args.host}:{args.port} (OpenAPI at /openapi.json)")
    uvicorn.run(create_app(settings, searcher), host=args.host, port=args.port, log_level="warning")
    return {}


def _dagster_processes(settings: Settings, host: str, port: int, debug: bool = False) -> list[Any]:
    import os
    import subprocess

    from rag_platform.defs.runner import prepare_home
    from rag_platform.defs.sensors import RUN_LOG_LEVEL_ENV

    prepare_home(settings)
    bindir = Path(sys.executable).parent
    module = ["-m", "rag_platform.definitions"]
    # Quiet unless --debug: the daemon's code server and the runs it launches log warnings only.
    level = "debug" if debug else "warning"
    webserver = [str(bindir / "dagster-webserver"), *module, "-h", host, "-p", str(port)]
    webserver += ["--dagster-log-level", level, "--code-server-log-level", level]
    daemon = [str(bindir / "dagster-daemon"), "run", *module, "--log-level", "info" if debug else "error"]
    daemon += ["--code-server-log-level", level]
    env = {**os.environ, RUN_LOG_LEVEL_ENV: level.upper()}
    return [subprocess.Popen(daemon, env=env), subprocess.Popen(webserver, env=env)]


def _stop_on_sigterm() -> None:
    """SIGTERM stops a long-running command the way Ctrl-C does (its child processes included), also when it
    was started in the background, where the shell makes it ignore SIGINT."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def _source_watcher(settings: Settings, debug: bool) -> Any:
    """The warm worker: refreshes in this process when a registered source folder changes (see defs/watcher.py)."""
    from rag_platform.defs.watcher import SourceWatcher

    if not settings.sensor.watch:
        return None
    watcher = SourceWatcher(settings, log_level="DEBUG" if debug else "CRITICAL")
    watcher.start()
    return watcher


def cmd_ui(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    _stop_on_sigterm()
    debug = getattr(args, "debug", False)
    processes = _dagster_processes(settings, args.host, args.port, debug)
    watching = "watching the sources, " if settings.sensor.watch else ""
    log(f"Dagster UI on http://{args.host}:{args.port} ({watching}sensors running; Ctrl-C to stop)")
    _wait(processes, settings, lambda: _source_watcher(settings, debug))
    return {}


def demo_corpus(settings: Settings) -> Path:
    """A copy of the bundled sample corpus in the platform home, made once: the folder the demo indexes and
    its sensor watches (the installed package's own copy is read-only in spirit and hidden in site-packages)."""
    import shutil
    from importlib.resources import as_file, files

    target = settings.home / "demo-corpus"
    if not target.is_dir():
        staging = settings.home / "demo-corpus.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        with as_file(files("rag_platform") / "sample_corpus") as sample:
            shutil.copytree(sample, staging)
        staging.rename(target)
    return target


def cmd_demo(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Copy the sample corpus into the platform home, index it, then serve the Dagster UI (whose sensor
    watches that folder) and the query API, printing one line per refresh run."""
    _stop_on_sigterm()
    debug = getattr(args, "debug", False)
    corpus = demo_corpus(settings)
    log(f"watching {corpus} (a copy of the sample corpus): edit, add or delete files there")
    summary = cmd_refresh(argparse.Namespace(source=str(corpus), full=False, debug=debug), settings)
    documents = sum(summary["documents"][k] for k in ("added", "modified", "unchanged"))
    chunks, seconds = summary["chunks"]["total"], summary["seconds"]
    log(
        f"indexed {documents} documents, {chunks} chunks in {seconds:.1f} s "
        f"({summary['chunks']['embedded']} embedded in {summary['chunks']['embedding_seconds']:.1f} s); "
        'try: rag-platform search "how do I roll back an index"'
    )
    processes = _dagster_processes(settings, args.host, args.ui_port, debug)
    log(f"Dagster UI on http://{args.host}:{args.ui_port}; query API on http://{args.host}:{args.api_port}")
    import subprocess

    api = subprocess.Popen(
        [sys.executable, "-m", "rag_platform.cli", "serve", "--host", args.host, "--port", str(args.api_port)]
    )
    _wait([*processes, api], settings, lambda: _source_watcher(settings, debug))
    return {}


def _wait(processes: Sequence[Any], settings: Settings | None = None, watch: Callable[[], Any] | None = None) -> None:
    """Until one process exits or the user stops us; then stop them all. With ``settings``, one line per
    refresh run that finished meanwhile (from the watcher, the UI, the sensor or the CLI). With ``watch``
    (which starts a source watcher), this thread runs the refreshes its file events call for."""
    seen_after = time.time()
    watcher = None
    try:
        watcher = _start_watcher(watch)  # inside the try: its warm-up may be interrupted like the rest
        while all(p.poll() is None for p in processes):
            _poll(watcher)
            if settings is not None:
                seen_after = _report_runs(seen_after)
    except KeyboardInterrupt:
        pass
    finally:
        if watcher is not None:
            watcher.stop()
        for p in processes:
            if p.poll() is None:
                p.terminate()
        for p in processes:
            p.wait(timeout=30)


def _start_watcher(watch: Callable[[], Any] | None) -> Any:
    if watch is None:
        return None
    try:
        return watch()
    except Exception as exc:  # e.g. a model that does not load: the sensor still refreshes
        log(f"not watching the sources ({type(exc).__name__}: {exc}); the sensor takes changes")
        return None


def _poll(watcher: Any) -> None:
    if watcher is None:
        time.sleep(1.0)
        return
    try:
        watcher.poll(1.0)
    except Exception as exc:  # a busy instance database or an unreadable snapshot: the next poll tries again
        log(f"watcher: {type(exc).__name__}: {exc}")
        time.sleep(1.0)


def _report_runs(after: float) -> float:
    from rag_platform.defs.sensors import finished_runs

    try:
        lines, latest = finished_runs(after)
    except Exception:  # a busy instance database: try again on the next poll
        return after
    for line in lines:
        log(line)
    return latest


# ---- parsing ----------------------------------------------------------------------------------------------


def _config_text(config: dict[str, Any]) -> str:
    """The effective configuration as TOML-like text: one ``[section]`` block per section."""
    lines: list[str] = []
    for section, values in config.items():
        if not isinstance(values, dict):
            lines.append(f"{section} = {json.dumps(values, default=str)}")
            continue
        lines.append(f"\n[{section}]")
        lines.extend(f"{key} = {json.dumps(value, default=str)}" for key, value in values.items())
    return "\n".join(lines).strip()


def _index_list_text(r: dict[str, Any]) -> str:
    if not r["versions"]:
        return f"no index versions of {r['alias']} yet; run rag-platform refresh --source DIR"
    rows = [
        f"{'*' if v['served'] else ' '} {v['version']}  {v['status']:<9} {v['count']:>7} chunks  "
        f"{v['embedding_model']}  created {v.get('created_at') or '-'}"
        for v in r["versions"]
    ]
    return "\n".join([f"versions of {r['alias']} (* served):", *rows])


def _score(side: dict[str, Any]) -> str:
    return "-" if side["ndcg@10"] is None else f"{side['ndcg@10']:.4f}"


def _printers() -> dict[str, Callable[[dict[str, Any]], str]]:
    return {
        "config show": _config_text,
        "sources list": lambda r: (
            "\n".join(r["sources"]) or "no sources registered; run rag-platform refresh --source DIR"
        ),
        "index list": _index_list_text,
        "finetune": lambda r: (
            f"model {r['model']['name']} ({r['model']['pairs']} pairs, {r['model']['train_seconds']:.0f} s): "
            f"nDCG@10 base {_score(r['base'])} -> candidate {_score(r['candidate'])}; "
            + (f"published, serving {r['index_version']}" if r["published"] else f"not published ({r['message']})")
        ),
        "refresh": lambda r: (
            f"run {r['run_id']}: {r['documents']} | chunks {r['chunks']} | index {r['index']['version']} "
            f"({r['index']['count']} chunks) published={r['published']} in {r['seconds']}s"
        ),
        "ask": lambda r: "\n".join(
            [r["answer"] if r["answer"] is not None else f"(no answer: {r['reason']})"]
            + [
                f"[{c['n']}] {c['title']} ({c['source']}, chunk {c['chunk_id']}): {c['quote']!r}"
                for c in r["citations"]
            ]
            + [f"{r['generator']['provider']} · index {r['index_version']} · {r['took_ms']:.1f} ms"]
        ),
        "search": lambda r: "\n".join(
            [f"index {r['index_version']} · {r['took_ms']:.1f} ms" + (" · no results" if not r["results"] else "")]
            + [
                f"{h['rank']:>2}. {h['score']:.4f}  {h['title']}  ({h['source']})\n    {h['text'][:160]!r}"
                for h in r["results"]
            ]
        ),
    }


def add_retrieval_options(p: argparse.ArgumentParser, k: int) -> None:
    """The retrieval options of ``search`` and ``ask``."""
    p.add_argument("--k", type=int, default=k)
    p.add_argument("--mode", choices=MODES, default="hybrid")
    p.add_argument("--rerank", choices=RERANKERS, default=None)
    p.add_argument("--filter", action="append", metavar="FIELD=VALUE", help="exact-match filter (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser = argparse.ArgumentParser(
        prog="rag-platform", description="Keep RAG search indexes fresh.", parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[..., dict[str, Any]], help_text: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text, **kw)
        p.set_defaults(handler=handler, command_name=name)
        return p

    p = add("refresh", cmd_refresh, "ingest sources and update the index (incremental unless --full)")
    p.add_argument("--source", help="a folder of documents; added as a source if new")
    p.add_argument("--full", action="store_true", help="rebuild a new index version from scratch")
    p.add_argument("--trigger", help="label for the run, tagged rag/trigger (default cli; e.g. airflow)")
    p = add("search", cmd_search, "query the served index")
    p.add_argument("query")
    add_retrieval_options(p, k=10)
    p.add_argument("--group-by-document", action="store_true", help="at most one result per document (its best)")
    p = add("ask", cmd_ask, "answer a question from the served index, with citations (or abstain)")
    p.add_argument("question")
    add_retrieval_options(p, k=5)
    add("status", cmd_status, "what is indexed and how fresh")
    p = add("audit", cmd_audit, "lineage of a chunk id or document id")
    p.add_argument("id")
    p = add("eval", cmd_eval, "evaluate retrieval on a BEIR-layout dataset in an isolated index")
    p.add_argument("--dataset", help="folder with corpus.jsonl, queries.jsonl, qrels/test.tsv")
    p.add_argument("--run-out", help="write TREC run files per mode into this folder")
    p = add(
        "finetune",
        cmd_finetune,
        "fine-tune the embedding model on the served corpus; publish its index only when eval.dataset improves",
    )
    p.add_argument("--budget-s", type=int, default=None, help="training time budget (default finetune.budget_s)")
    p = add("serve", cmd_serve, "run the query API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p = add("ui", cmd_ui, "run the Dagster UI (webserver and daemon, sensors on)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p = add("demo", cmd_demo, "index the bundled sample corpus, then serve the UI and the query API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--ui-port", type=int, default=3000)
    p.add_argument("--api-port", type=int, default=8000)

    groups: dict[str, list[tuple[str, Callable[..., dict[str, Any]], str, list[tuple[str, dict[str, Any]]]]]] = {
        "config": [("show", cmd_config_show, "print the effective configuration", [])],
        "sources": [
            ("list", cmd_sources_list, "list registered source folders", []),
            ("remove", cmd_sources_remove, "forget a source folder", [("path", {})]),
        ],
        "index": [
            ("list", cmd_index_list, "list index versions", []),
            ("rollback", cmd_index_rollback, "serve an earlier index version", [("version", {})]),
        ],
        "benchmark": [
            (
                "embed",
                cmd_benchmark_embed,
                "embed sample chunks with every backend, side by side",
                [("--chunks", {"type": int, "default": 512})],
            ),
        ],
    }
    for group, commands in groups.items():
        g = sub.add_parser(group, parents=[common], help=f"{group} commands")
        gsub = g.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        for name, handler, help_text, arguments in commands:
            p = gsub.add_parser(name, parents=[common], help=help_text, description=help_text)
            p.set_defaults(handler=handler, command_name=f"{group} {name}")
            for arg, kwargs in arguments:
                p.add_argument(arg, **kwargs)
    return parser


def _emit(command: str, result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
        return
    printer = _printers().get(command)
    sys.stdout.write((printer(result) if printer else json.dumps(result, indent=2, default=str)) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr)
    ours = logging.getLogger("rag_platform")
    ours.setLevel(logging.DEBUG if args.debug else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours.addHandler(handler)
    ours.propagate = False
    if not args.debug:
        # The Elasticsearch transport logs each retry with a traceback; the one-line error below says enough.
        logging.getLogger("elastic_transport").setLevel(logging.CRITICAL)
        # A run with nothing to do skips the index step; Dagster then warns once per blocking check it skipped.
        logging.getLogger("dagster._core.execution.plan.active").setLevel(logging.ERROR)
        import warnings

        warnings.filterwarnings("ignore")
    try:
        settings = load_settings()
        check_settings(settings)
        prepare_environment(settings)
        result = args.handler(args, settings)
        if args.command_name not in {"serve", "ui", "demo"}:
            _emit(args.command_name, result, args.json)
        return 0
    except (UsageError, ConfigError) as exc:
        log(f"error: {exc}")
        if args.debug:
            raise
        return 2
    except CommandFailed as exc:
        if exc.result is not None:
            _emit(args.command_name, exc.result, args.json)
        log(f"error: {exc}")
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log(f"error: {type(exc).__name__}: {message}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
