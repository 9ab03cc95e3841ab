#!/usr/bin/env python3
"""Load configs/cluster/airflow_dag.py with Airflow's own DAG loader and print its DAGs; exit 1 on any
import error (an unknown operator argument, a missing job file...). Needs Airflow and the two providers,
best in an environment of their own (Airflow pins many libraries):

  python -m venv /tmp/airflow && /tmp/airflow/bin/pip install '.[airflow]'
  AIRFLOW_HOME=/tmp/airflow-home /tmp/airflow/bin/python scripts/check_airflow_dag.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

CLUSTER = Path(__file__).resolve().parent.parent / "configs" / "cluster"
FILES = ("airflow_dag.py", "emr-serverless-start-job-run.json", "databricks-job.json")


def load_dags() -> tuple[dict, dict]:
    """(dag id -> DAG, file -> import error) of the DAG file copied, with its job files, to a DAGs folder."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag
    folder = Path(tempfile.mkdtemp(prefix="dags-"))
    for name in FILES:
        shutil.copy(CLUSTER / name, folder / name)
    bag = DagBag(dag_folder=str(folder))
    return bag.dags, bag.import_errors


def main() -> int:
    dags, errors = load_dags()
    for path, error in errors.items():
        print(f"{path}: {error}", file=sys.stderr)
    for dag_id, dag in sorted(dags.items()):
        print(f"{dag_id}: {[(t.task_id, type(t).__name__) for t in dag.tasks]}, {dag.timetable}, "
              f"max_active_runs {dag.max_active_runs}, catchup {dag.catchup}")
    return 1 if errors or len(dags) != 2 else 0


if __name__ == "__main__":
    sys.exit(main())
