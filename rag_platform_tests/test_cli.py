"""The console script through a subprocess, as users and outside checks drive it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from shared_env import inherited_environment

CORPUS = Path(__file__).parent / "data" / "corpus"


def cli(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    environment = inherited_environment()
    environment.update({"RAG_PLATFORM_HOME": str(home), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "rag_platform.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=home.parent,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and fragment in lines[-1]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["refresh", "--source", "/definitely/missing"], "does not exist"),
        (["search", "x", "--k", "0"], "k"),
        (["search", "x", "--mode", "fuzzy"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_usage_exits_2_with_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = cli(tmp_path / "home", *args)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_source_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    file = tmp_path / "file.md"
    file.write_text("# x")
    assert_one_line_error(cli(tmp_path / "home", "refresh", "--source", str(file)), 2, "is not a folder")


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    result = cli(tmp_path / "home", "status", "--json", env={"RAG_PLATFORM__CHUNKER__MAX_TOKENS": "lots"})
    assert_one_line_error(result, 2, "chunker.max_tokens")
    assert result.stdout == ""


def test_config_show_json(tmp_path: Path) -> None:
    result = cli(tmp_path / "home", "config", "show", "--json", env={"RAG_PLATFORM__INDEX__KEEP_VERSIONS": "3"})
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["index"]["keep_versions"] == 3 and config["embedding"]["model"] == "all-MiniLM-L6-v2"


def test_status_before_any_refresh(tmp_path: Path) -> None:
    result = cli(tmp_path / "home", "status", "--json")
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["documents"] == 0 and state["index"]["version"] is None and state["quarantined"] == []


@pytest.mark.slow
def test_refresh_search_status_audit_index_commands(tmp_path: Path) -> None:
    home, corpus = tmp_path / "home", tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    (corpus / "bad.md").write_bytes(b"\xff\xfe\x00\x00")

    result = cli(home, "refresh", "--source", str(corpus), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)  # stdout is exactly one JSON document
    assert summary["documents"]["added"] == 5 and summary["documents"]["quarantined"] == 1
    assert summary["published"] is True and summary["index"]["count"] == summary["chunks"]["total"]
    assert set(summary) >= {"run_id", "seconds", "documents", "chunks", "index", "gates"}

    result = cli(home, "search", "roll back to an earlier index version", "--json", "--k", "3")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["results"][0]["source"].endswith("rollback.md")
    assert answer["index_version"] == summary["index"]["version"]
    first = answer["results"][0]
    assert {
        "rank",
        "chunk_id",
        "document_id",
        "source",
        "title",
        "text",
        "score",
        "document_version",
        "reranked",
    } <= set(first)

    state = json.loads(cli(home, "status", "--json").stdout)
    assert state["documents"] == 5 and state["chunks"] == state["index"]["count"] == summary["index"]["count"]
    assert [Path(q["source"]).name for q in state["quarantined"]] == ["bad.md"]
    assert len(state["index"]["checksum"]) == 64

    record = json.loads(cli(home, "audit", first["chunk_id"], "--json").stdout)
    assert record["run_id"] == summary["run_id"] and record["document_version"] == first["document_version"]
    assert_one_line_error(cli(home, "audit", "0" * 32), 2, "unknown")

    rebuilt = json.loads(cli(home, "refresh", "--full", "--json").stdout)
    versions = json.loads(cli(home, "index", "list", "--json").stdout)["versions"]
    assert [v["version"] for v in versions] == [rebuilt["index"]["version"], summary["index"]["version"]]
    assert versions[0]["served"] and not versions[1]["served"]
    rolled = cli(home, "index", "rollback", summary["index"]["version"], "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(cli(home, "status", "--json").stdout)["index"]["version"] == summary["index"]["version"]
    assert_one_line_error(cli(home, "index", "rollback", "nope"), 2, "unknown index version")

    human = cli(home, "search", "sourdough")
    assert human.returncode == 0 and "baking" in human.stdout.lower()


def test_unreachable_elasticsearch_fails_the_refresh_before_anything_is_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    down = {"RAG_ES_URL": "http://127.0.0.1:9", "RAG_ES_PASSWORD": "never-shown", "RAG_ES_USERNAME": "elastic"}
    result = cli(home, "refresh", "--source", str(CORPUS), env=down)
    assert_one_line_error(result, 1, "Elasticsearch at http://127.0.0.1:9 is unreachable")
    assert "never-shown" not in result.stderr + result.stdout
    status = json.loads(cli(home, "status", "--json").stdout)
    assert status["documents"] == 0 and status["chunks"] == 0  # the ledger did not move


@pytest.mark.slow
def test_eval_on_the_vendored_dbpedia_subset(tmp_path: Path) -> None:
    """The real model on real judged queries: dense retrieval beats chance by far and hybrid keeps up."""
    dataset = Path(__file__).parent / "data" / "dbpedia_subset"
    result = cli(tmp_path / "home", "eval", "--dataset", str(dataset), "--run-out", str(tmp_path / "runs"), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert (report["documents"], report["queries"]) == (150, 6)
    assert set(report["modes"]) == {"keyword", "dense", "hybrid"}
    for metrics in report["modes"].values():
        assert set(metrics) == {"ndcg@10", "recall@10", "recall@100", "mrr@10"}
        assert all(0.0 <= value <= 1.0 for value in metrics.values())
    modes = report["modes"]
    assert modes["dense"]["ndcg@10"] > 0.5
    assert modes["hybrid"]["ndcg@10"] >= min(modes["dense"]["ndcg@10"], modes["keyword"]["ndcg@10"])
    for mode in ("keyword", "dense", "hybrid"):
        lines = (tmp_path / "runs" / f"{mode}.trec").read_text().splitlines()
        assert lines and all(len(line.split()) == 6 for line in lines)


def test_listing_commands_print_text_without_json(tmp_path: Path) -> None:
    """Regression: ``config show``, ``sources list`` and ``index list`` printed JSON without --json."""
    home = tmp_path / "home"
    shown = cli(home, "config", "show", env={"RAG_PLATFORM__INDEX__KEEP_VERSIONS": "3"})
    assert shown.returncode == 0 and "[index]" in shown.stdout and "keep_versions = 3" in shown.stdout
    for args, expected in ((("sources", "list"), "no sources registered"), (("index", "list"), "no index versions")):
        result = cli(home, *args)
        assert result.returncode == 0 and expected in result.stdout and not result.stdout.lstrip().startswith("{")


def test_sigterm_stops_ui_started_in_the_background(tmp_path: Path) -> None:
    """Regression: started in the background (SIGINT ignored, as a shell's ``&`` does), the long-running
    commands ignored SIGTERM and left their servers running. SIGTERM now stops them and their children."""
    import signal
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    environment = inherited_environment()
    environment["RAG_PLATFORM_HOME"] = str(tmp_path / "home")
    process = subprocess.Popen(
        [sys.executable, "-m", "rag_platform.cli", "ui", "--host", "127.0.0.1", "--port", str(port)],
        env=environment,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # printed once both servers were started
        assert "Dagster UI on" in line
        children = _children(process.pid)
        assert children
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) is not None
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [pid for pid in children if Path(f"/proc/{pid}/status").exists() and not _zombie(pid)]
    finally:
        if process.poll() is None:
            process.kill()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _zombie(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "Z"
    except OSError:
        return True


def test_demo_watches_a_copy_of_the_sample_corpus_in_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the demo watched the sample corpus inside site-packages, so edits a user made to the
    checked-out copy never reached the index. It now copies it once into the home and keeps user edits."""
    from importlib.resources import files

    from rag_platform.cli import demo_corpus
    from rag_platform.config import load_settings

    monkeypatch.setenv("RAG_PLATFORM_HOME", str(tmp_path / "home"))
    settings = load_settings()
    folder = demo_corpus(settings)
    sample = Path(str(files("rag_platform") / "sample_corpus"))
    assert folder.is_relative_to(settings.home)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*.md")) == sorted(
        p.relative_to(sample) for p in sample.rglob("*.md")
    )
    (folder / "mine.md").write_text("# Mine\n\nA page I added.\n")
    assert demo_corpus(settings) == folder and (folder / "mine.md").is_file()
