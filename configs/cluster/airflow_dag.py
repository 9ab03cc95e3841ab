"""Airflow DAGs running the recsys-spark pipeline every night at 02:00 UTC: one on EMR Serverless (the
Amazon provider's operator), one on Databricks (the Databricks provider's operator).

Copy this file with emr-serverless-start-job-run.json and databricks-job.json into the DAGs folder; the
DAGs read their job definitions from those files, the same ones the README's CLI examples send. Needs
Airflow 3 with apache-airflow-providers-amazon, -databricks and -smtp, and the connections ``aws_default``,
``databricks_default`` and ``smtp_default`` (failure mails).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from airflow import DAG
from airflow.providers.amazon.aws.operators.emr import EmrServerlessStartJobOperator
from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator
from airflow.providers.smtp.notifications.smtp import SmtpNotifier

HERE = Path(__file__).resolve().parent
EMR_RUN = json.loads((HERE / "emr-serverless-start-job-run.json").read_text())
DATABRICKS_JOB = json.loads((HERE / "databricks-job.json").read_text())

DEFAULTS = {
    "owner": "data-eng",
    "retries": 2,
    "retry_delay": timedelta(minutes=15),
    "on_failure_callback": SmtpNotifier(to="data-eng@example.com", subject="recsys-spark nightly run failed"),
}
NIGHTLY = {
    "schedule": "0 2 * * *",
    "start_date": datetime(2026, 12, 1),
    "catchup": False,  # a missed night is not replayed: the next run imports every file not imported yet
    "max_active_runs": 1,  # never two runs at once (the pipeline's run lock would make the second exit 75)
    "default_args": DEFAULTS,
    "tags": ["recsys-spark"],
}

with DAG(dag_id="recsys_spark_nightly_emr_serverless", **NIGHTLY):
    EmrServerlessStartJobOperator(
        task_id="pipeline",
        application_id=EMR_RUN["applicationId"],
        execution_role_arn=EMR_RUN["executionRoleArn"],
        job_driver=EMR_RUN["jobDriver"],
        configuration_overrides=EMR_RUN["configurationOverrides"],
        name=EMR_RUN["name"],
        wait_for_completion=True,
        execution_timeout=timedelta(minutes=EMR_RUN["executionTimeoutMinutes"]),
    )

with DAG(dag_id="recsys_spark_nightly_databricks", **NIGHTLY):
    # The job's task and cluster; the schedule, retries and alerts are this DAG's (the file's own schedule
    # is for Databricks' scheduler: use one or the other).
    [task] = DATABRICKS_JOB["tasks"]
    DatabricksSubmitRunOperator(
        task_id="pipeline",
        databricks_conn_id="databricks_default",
        run_name=DATABRICKS_JOB["name"],
        tasks=[{k: v for k, v in task.items() if k not in ("max_retries", "min_retry_interval_millis",
                                                            "retry_on_timeout")}],
        timeout_seconds=DATABRICKS_JOB["timeout_seconds"],
        wait_for_termination=True,
    )
