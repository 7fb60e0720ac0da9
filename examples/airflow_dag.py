"""Example Airflow DAG for teams that schedule with Airflow: it calls the same `rag-platform refresh` the
Dagster sensor runs (one path: the refresh still executes the Dagster job, with its dbt, GX and index gates).

Copy into your Airflow dags folder on a machine where rag-platform is installed; set RAG_PLATFORM_HOME (and
RAG_ES_* for Elasticsearch) in the worker's environment. Not a dependency of rag-platform.
"""

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG(
    dag_id="rag_platform_refresh",
    schedule=timedelta(minutes=15),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # rag-platform also holds an OS lock; a second run would wait for nothing
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
) as dag:
    # Exit status 1 (a failed or blocked refresh) fails the task; the previous index version keeps serving.
    BashOperator(task_id="refresh", bash_command="rag-platform refresh --json")
