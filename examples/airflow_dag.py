"""Example Airflow 3 DAG for teams that schedule with Airflow: it calls the same `rag-platform refresh` the Dagster
sensor runs (one path: the refresh still executes the Dagster job, with its dbt, GX and index gates), labelled
`rag/trigger=airflow` in Dagster's run history.

Copy into your Airflow dags folder on a machine where rag-platform is installed; set RAG_PLATFORM_HOME (and
RAG_ES_*, RAG_PLATFORM_DAGSTER_PG_URL as deployed) in the worker's environment. Try it once with
`airflow dags test rag_platform_refresh`. Not a dependency of rag-platform.

Exit statuses (rag-platform's contract): 0 refreshed; 3 a quality gate blocked the refresh and the previous index
keeps serving: the same input would block again, so the task fails without retrying; anything else (1: the
search backend was down, a crash) is retried.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, task

try:  # Airflow 3.1+ exposes task exceptions in the SDK; 3.0 only in airflow.exceptions
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # pragma: no cover - depends on the Airflow minor version
    from airflow.exceptions import AirflowFailException

REFRESH = [os.environ.get("RAG_PLATFORM_BIN", "rag-platform"), "refresh", "--json", "--trigger", "airflow"]
BLOCKED = 3


@dag(
    dag_id="rag_platform_refresh",
    schedule=timedelta(minutes=15),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # refreshes also serialize on rag-platform's own lock; a second run would only wait
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["rag-platform"],
)
def rag_platform_refresh() -> None:
    @task
    def refresh() -> dict[str, Any]:
        """Run the refresh; its JSON summary becomes the task's XCom."""
        result = subprocess.run(REFRESH, capture_output=True, text=True, check=False)
        sys.stderr.write(result.stderr)  # rag-platform's own log lines, in the task log
        reason = (result.stderr.strip().splitlines() or ["no message"])[-1]
        if result.returncode == BLOCKED:
            raise AirflowFailException(f"blocked by a quality gate, previous index still served: {reason}")
        if result.returncode != 0:
            raise RuntimeError(f"rag-platform refresh exited {result.returncode}: {reason}")  # retried
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    refresh()


rag_platform_refresh()
