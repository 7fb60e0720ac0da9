"""Process environment shared by the CLI and the Dagster code location: where Dagster keeps its instance (SQLite
under the home, or PostgreSQL from ``RAG_PLATFORM_DAGSTER_PG_URL``), and offline settings for the model libraries."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from rag_platform.config import ConfigError, Settings

PG_URL_ENV = "RAG_PLATFORM_DAGSTER_PG_URL"
# The URL's parts, exported for dagster.yaml's ``env:`` references: the password is only ever in the environment.
PG_PART_ENV = {
    "username": "RAG_PLATFORM_DAGSTER_PG_USER",
    "password": "RAG_PLATFORM_DAGSTER_PG_PASSWORD",
    "hostname": "RAG_PLATFORM_DAGSTER_PG_HOST",
    "port": "RAG_PLATFORM_DAGSTER_PG_PORT",
    "db_name": "RAG_PLATFORM_DAGSTER_PG_DB",
}
# A dagster.yaml that starts with this line is rewritten to match the environment; delete the line to keep edits.
MANAGED = "# Managed by rag-platform (rewritten from RAG_PLATFORM_DAGSTER_PG_URL); delete this line to keep your edits."

# What earlier releases wrote; replaced as if managed (it was never edited when it still reads exactly so).
LEGACY_YAML = """# Written by rag-platform on first use; edit freely (e.g. PostgreSQL storage).
telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 1
"""

# Sensor ticks that skipped are most of them (one per interval): keep a day of those, not Dagster's week.
INSTANCE_COMMON = """telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 1
run_queue:
  dequeue_interval_seconds: 1
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  max_runtime_seconds: 43200
retention:
  schedule:
    purge_after_days: 90
  sensor:
    purge_after_days:
      skipped: 1
      failure: 30
      success: -1
"""

# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; dagster-postgres (and our lock) use psycopg2.
PG_STORAGE = """storage:
  postgres:
    postgres_db:
      scheme: postgresql+psycopg2
      username:
        env: RAG_PLATFORM_DAGSTER_PG_USER
      password:
        env: RAG_PLATFORM_DAGSTER_PG_PASSWORD
      hostname:
        env: RAG_PLATFORM_DAGSTER_PG_HOST
      port:
        env: RAG_PLATFORM_DAGSTER_PG_PORT
      db_name:
        env: RAG_PLATFORM_DAGSTER_PG_DB
"""


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    """Where the Dagster instance lives when it is on PostgreSQL; ``repr`` never shows the password."""

    username: str
    password: str
    hostname: str
    port: int
    db_name: str
    params: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return f"PostgresTarget({self.redacted()})"

    def redacted(self) -> str:
        return f"postgresql://{self.username}:***@{self.hostname}:{self.port}/{self.db_name}"

    def connect_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``psycopg2.connect``."""
        return {
            "user": self.username,
            "password": self.password,
            "host": self.hostname,
            "port": self.port,
            "dbname": self.db_name,
            **dict(self.params),
        }


def parse_pg_url(url: str) -> PostgresTarget:
    """Parse ``postgresql://USER:PASSWORD@HOST:PORT/DB[?sslmode=...]``; errors never echo the password."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or 5432
    except ValueError:
        raise ConfigError(f"{PG_URL_ENV} is not a URL of the form postgresql://USER:PASSWORD@HOST:PORT/DB") from None
    scheme = parts.scheme.split("+", 1)[0]
    db_name = unquote(parts.path.lstrip("/"))
    if scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.username or not db_name:
        raise ConfigError(
            f"{PG_URL_ENV} must look like postgresql://USER:PASSWORD@HOST:PORT/DB (scheme, user, host and "
            "database are required)"
        )
    return PostgresTarget(
        username=unquote(parts.username),
        password=unquote(parts.password or ""),
        hostname=parts.hostname,
        port=port,
        db_name=db_name,
        params=tuple(parse_qsl(parts.query)),
    )


def postgres_target() -> PostgresTarget | None:
    """The PostgreSQL instance from the environment, or None for SQLite under the home."""
    url = os.environ.get(PG_URL_ENV, "").strip()
    return parse_pg_url(url) if url else None


def instance_yaml(target: PostgresTarget | None) -> str:
    """The dagster.yaml for ``target``: connection parts are ``env:`` references, never literal secrets."""
    text = f"{MANAGED}\n{INSTANCE_COMMON}"
    if target is None:
        return text
    text += PG_STORAGE
    if target.params:
        # Connection options such as sslmode are not secret; written as given.
        text += "      params:\n" + "".join(f"        {k}: {v!r}\n" for k, v in target.params)
    return text


def prepare_environment(settings: Settings) -> Path:
    """Point ``DAGSTER_HOME`` at the platform home's instance (unless set) and make sure it exists, configured for
    SQLite under the home or for the PostgreSQL server named by ``RAG_PLATFORM_DAGSTER_PG_URL``."""
    os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home))
    os.environ["RAG_PLATFORM_HOME"] = str(settings.home)
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    target = postgres_target()
    if target is not None:
        parts = {"username": target.username, "password": target.password, "hostname": target.hostname}
        parts |= {"port": str(target.port), "db_name": target.db_name}
        for key, name in PG_PART_ENV.items():
            os.environ[name] = parts[key]
    config = home / "dagster.yaml"
    wanted = instance_yaml(target)
    current = config.read_text(encoding="utf-8") if config.exists() else None
    if current is None or current == LEGACY_YAML or (current.startswith(MANAGED) and current != wanted):
        staged = config.with_name(f".dagster.yaml.{os.getpid()}")
        staged.write_text(wanted, encoding="utf-8")
        staged.replace(config)  # atomic: a webserver or run worker never reads half a file
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # The embedded index's Rust side logs a WARN line per empty IVF partition each time a refresh updates it.
    os.environ.setdefault("LANCEDB_LOG", "error")
    return home
