"""The example Airflow DAG loads under Airflow 3 (when Airflow is installed; it is not a dependency)."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_airflow_dag_loads_and_does_not_retry_a_blocked_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("airflow.sdk", reason="Airflow 3 is not installed (the example DAG is not a dependency)")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(EXAMPLES / "airflow_dag.py"))
    assert bag.import_errors == {}
    dag = bag.dags["rag_platform_refresh"]
    (task,) = dag.tasks
    assert task.retries == 2 and dag.max_active_runs == 1
    source = (EXAMPLES / "airflow_dag.py").read_text(encoding="utf-8")
    assert '"--trigger", "airflow"' in source and "AirflowFailException" in source


def test_example_dag_uses_airflow_3_imports() -> None:
    """Without Airflow installed, at least the imports are the Airflow 3 ones (no deprecated airflow.operators)."""
    import ast

    tree = ast.parse((EXAMPLES / "airflow_dag.py").read_text(encoding="utf-8"))
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "airflow.sdk" in modules
    assert not {m for m in modules if m and (m.startswith("airflow.operators") or m == "airflow.models")}
