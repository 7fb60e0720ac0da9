"""Dagster on PostgreSQL from ``RAG_PLATFORM_DAGSTER_PG_URL``, against a real server: the instance configuration,
a CLI refresh, the runs through the webserver's GraphQL, a sensor-launched run through the daemon, and a blocked
refresh (exit 3). The password never appears in output, logs or files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pg_tools import Database, Postgres
from shared_env import inherited_environment

from rag_platform.config import ConfigError
from rag_platform.environment import MANAGED, PG_PART_ENV, PG_URL_ENV, parse_pg_url, prepare_environment

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
RUNS_QUERY = "{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"


def test_pg_url_is_parsed_and_never_shown() -> None:
    target = parse_pg_url("postgresql://dagster:s3cr%40t%2Fpw@db.internal:6543/dagster?sslmode=require")
    assert (target.username, target.password, target.hostname) == ("dagster", "s3cr@t/pw", "db.internal")
    assert (target.port, target.db_name, target.params) == (6543, "dagster", (("sslmode", "require"),))
    assert "s3cr" not in repr(target) and "s3cr" not in target.redacted()
    assert parse_pg_url("postgres://u:p@h/db").port == 5432
    for bad in ("mysql://u:p@h/db", "postgresql://u:p@h:5432/", "postgresql://h/db", "postgresql://u:topsecret@h:x/db"):
        with pytest.raises(ConfigError) as error:
            parse_pg_url(bad)
        assert "topsecret" not in str(error.value) and PG_URL_ENV in str(error.value)


def test_instance_config_follows_the_url_and_keeps_edited_files(
    platform_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag_platform.config import load_settings

    yaml_path = platform_home / "dagster" / "dagster.yaml"
    for name in PG_PART_ENV.values():
        monkeypatch.setenv(name, "")  # restored after the test: prepare_environment sets them
    monkeypatch.setenv(PG_URL_ENV, "postgresql://dagster:hunter2hunter2@pg.example:5433/runs")
    prepare_environment(load_settings())
    text = yaml_path.read_text(encoding="utf-8")
    assert "hunter2" not in text and "scheme: postgresql+psycopg2" in text
    assert f"env: {PG_PART_ENV['password']}" in text and os.environ[PG_PART_ENV["password"]] == "hunter2hunter2"
    assert os.environ[PG_PART_ENV["port"]] == "5433"
    monkeypatch.delenv(PG_URL_ENV)
    prepare_environment(load_settings())  # back to SQLite: the managed file is rewritten
    assert "postgres" not in yaml_path.read_text(encoding="utf-8")
    edited = yaml_path.read_text(encoding="utf-8").replace(MANAGED + "\n", "") + "# mine\n"
    yaml_path.write_text(edited, encoding="utf-8")
    monkeypatch.setenv(PG_URL_ENV, "postgresql://dagster:hunter2hunter2@pg.example:5433/runs")
    prepare_environment(load_settings())
    assert yaml_path.read_text(encoding="utf-8") == edited  # without the marker line, the operator's file wins


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tag(run: dict, key: str) -> str:  # type: ignore[type-arg]
    return next((t["value"] for t in run["tags"] if t["key"] == key), "")


def graphql_runs(port: int) -> list[dict]:  # type: ignore[type-arg]
    response = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": RUNS_QUERY}, timeout=30)
    response.raise_for_status()
    return response.json()["data"]["runsOrError"]["results"]  # type: ignore[no-any-return]


@pytest.mark.slow
def test_refresh_ui_and_sensor_on_postgres(tmp_path: Path, postgres: Postgres, tiny_model_dir: Path) -> None:
    url = postgres.new_database()
    password = parse_pg_url(url).password
    db = Database(url)
    home = tmp_path / "home"
    source = tmp_path / "corpus"
    shutil.copytree(CORPUS, source)
    env = inherited_environment() | {
        "RAG_PLATFORM_HOME": str(home),
        PG_URL_ENV: url,
        "RAG_PLATFORM__SENSOR__INTERVAL_S": "2",
        "RAG_PLATFORM__EMBEDDING__MODEL": str(tiny_model_dir),  # the model is not the point here
    }
    outputs: list[str] = []

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "rag_platform.cli", *args]
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        outputs.extend([result.stdout, result.stderr])
        return result

    first = cli("refresh", "--source", str(source), "--trigger", "airflow", "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    run_id = json.loads(first.stdout)["run_id"]
    assert db.runs() == {run_id: "SUCCESS"}  # in PostgreSQL, and nothing went to SQLite
    assert db.tags(run_id)["rag/trigger"] == "airflow" and db.tags(run_id)["rag/lock"] == "postgres"
    assert not list((home / "dagster").rglob("*.db"))
    assert cli("refresh", "--trigger", "Bad Label").returncode == 2

    # The UI (webserver + daemon) on the same instance: the CLI's run is there, and a source edit makes the
    # sensor launch a run through the daemon's queue (the ui's own watcher is off: this is the daemon's path).
    port = free_port()
    ui_log = tmp_path / "ui.log"
    with ui_log.open("w") as log:
        ui = subprocess.Popen(
            [sys.executable, "-m", "rag_platform.cli", "ui", "--host", "127.0.0.1", "--port", str(port)],
            env={**env, "RAG_PLATFORM__SENSOR__WATCH": "false"},
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and ui.poll() is None, ui_log.read_text()[-3000:]
            time.sleep(1)
        assert {r["runId"]: r["status"] for r in graphql_runs(port)}[run_id] == "SUCCESS"
        # Let whatever the sensor started on its first ticks finish, so the edit below is a change of its own.
        deadline, quiet_since = time.monotonic() + 300, time.monotonic()
        while time.monotonic() - quiet_since < 6:
            if any(r["status"] not in ("SUCCESS", "FAILURE", "CANCELED") for r in graphql_runs(port)):
                quiet_since = time.monotonic()
            assert time.monotonic() < deadline, ui_log.read_text()[-3000:]
            time.sleep(1)
        (source / "chess.txt").write_text("Castling moves the king two squares toward a rook.\n", encoding="utf-8")
        deadline = time.monotonic() + 420
        while True:
            sensor_runs = [r for r in graphql_runs(port) if tag(r, "dagster/sensor_name")]
            done = all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in sensor_runs)
            if done and any(", 1 modified," in tag(r, "rag/changes") for r in sensor_runs):
                break
            assert time.monotonic() < deadline, (sensor_runs, ui_log.read_text()[-3000:])
            time.sleep(2)
        for run in sensor_runs:
            assert run["status"] == "SUCCESS", ui_log.read_text()[-3000:]
            events = db.events(run["runId"])  # through the daemon's queue, then the launcher
            assert events[0] == "RUN_ENQUEUED" and events[-1] == "RUN_SUCCESS", events
            assert "RUN_FAILURE" not in events
    finally:
        os.killpg(ui.pid, signal.SIGINT)  # the CLI stops its webserver and daemon on Ctrl-C
        try:
            ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
    outputs.append(ui_log.read_text())

    # A refresh a gate blocks (most of the corpus vanished: an unmounted folder) exits 3; the index keeps serving.
    before = json.loads(cli("status", "--json").stdout)["index"]
    for path in sorted(p for p in source.rglob("*") if p.is_file())[1:]:
        path.unlink()
    blocked = cli("refresh", "--json")
    assert blocked.returncode == 3, blocked.stderr[-3000:]
    assert blocked.stderr.strip().splitlines()[-1].startswith("error: refresh blocked by quality gate")
    assert json.loads(blocked.stdout)["published"] is False
    assert json.loads(cli("status", "--json").stdout)["index"] == before

    # The password is in no output or log, and in no file under the home.
    assert not [text for text in outputs if password in text]
    leaked = [p for p in home.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
    assert not leaked
