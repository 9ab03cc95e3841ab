"""The platform examples in configs/cluster/ checked against the platforms' own API models, not ours: the EMR
and EMR Serverless requests against the service models botocore ships (the ones the AWS CLI and SDKs
validate with), the Databricks job against the Jobs API dataclasses of databricks-sdk. Plus what the
models cannot know: an access mode with the classic Spark API, an instance profile, a run timeout, and the
Delta jars and Python files of the EMR release each example names."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from conftest import REPO

CLUSTER = REPO / "configs" / "cluster"
# Where each EMR release the examples may name ships Delta (EMR's release guide: delta-spark.jar and
# delta-storage.jar under /usr/share/aws/delta/lib from 7.0 on). The jar also carries Delta's Python
# package (delta/tables.py ...), so the same jar on the Python path gives `import delta.tables`.
EMR_RELEASES = {
    "emr-spark-8.0.0": {"spark": "4.0.2", "delta": "4.0.0",
                        "jars": ["/usr/share/aws/delta/lib/delta-spark.jar", "/usr/share/aws/delta/lib/delta-storage.jar"],
                        "python_files": ["/usr/share/aws/delta/lib/delta-spark.jar"]},
}


def load(name: str):
    return json.loads((CLUSTER / name).read_text())


def validate(service: str, operation: str, params: dict) -> None:
    """Validate ``params`` as botocore does before sending ``operation`` (raises ParamValidationError)."""
    import botocore.session
    from botocore.validate import ParamValidator

    shape = botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape
    # Idempotency tokens are filled in by the CLI and SDKs when the request leaves them out.
    params = {**{name: "token-filled-by-the-sdk" for name, member in shape.members.items()
                 if member.metadata.get("idempotencyToken") and name not in params}, **params}
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        from botocore.exceptions import ParamValidationError

        raise ParamValidationError(report=report.generate_report())


def confs(args: list[str]) -> dict[str, str]:
    """The ``--conf key=value`` pairs of a spark-submit argument list."""
    return dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--conf")


def test_emr_cluster_and_step_pass_the_emr_model():
    cluster = load("emr-cluster.json")
    validate("emr", "RunJobFlow", cluster)
    validate("emr", "AddJobFlowSteps", {"JobFlowId": "j-EXAMPLE", "Steps": load("emr-step.json")})
    assert cluster["ReleaseLabel"] in EMR_RELEASES and {"Name": "Spark"} in cluster["Applications"]
    assert cluster["JobFlowRole"]  # the EC2 instance profile the nodes reach S3 with


def test_emr_step_uses_the_releases_own_delta_jars_and_python_files():
    release = EMR_RELEASES[load("emr-cluster.json")["ReleaseLabel"]]
    [step] = load("emr-step.json")
    args = step["HadoopJarStep"]["Args"]
    assert confs(args)["spark.jars"].split(",") == release["jars"]
    py_files = args[args.index("--py-files") + 1].split(",")
    assert set(release["python_files"]) <= set(py_files)


def test_emr_serverless_application_and_run_pass_the_emr_serverless_model():
    app, run = load("emr-serverless-create-application.json"), load("emr-serverless-start-job-run.json")
    validate("emr-serverless", "CreateApplication", app)
    validate("emr-serverless", "StartJobRun", run)
    assert app["releaseLabel"] in EMR_RELEASES and app["type"] == "SPARK"
    assert 0 < run["executionTimeoutMinutes"] <= 24 * 60  # a stuck run stops being billed
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/.+", run["executionRoleArn"])
    release = EMR_RELEASES[app["releaseLabel"]]
    params = confs(shlex.split(run["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"]))
    assert params["spark.jars"].split(",") == release["jars"]
    assert set(release["python_files"]) <= set(params["spark.submit.pyFiles"].split(","))


def test_the_botocore_check_catches_a_misspelt_key():
    from botocore.exceptions import ParamValidationError

    run = load("emr-serverless-start-job-run.json")
    run["executionTimeoutMinute"] = run.pop("executionTimeoutMinutes")
    with pytest.raises(ParamValidationError, match="executionTimeoutMinute"):
        validate("emr-serverless", "StartJobRun", run)


def databricks_round_trip(job: dict) -> dict:
    """The job as the SDK's Jobs API model reads and writes it: unknown keys and enum values drop out."""
    from databricks.sdk.service.jobs import JobSettings

    return JobSettings.from_dict(job).as_dict()


def test_databricks_job_passes_the_jobs_api_model():
    job = load("databricks-job.json")
    assert databricks_round_trip(job) == job
    [task] = job["tasks"]
    cluster = task["new_cluster"]
    # Dedicated (single user) access mode: the code uses SparkContext, RDDs and the JVM gateway, which
    # standard (shared) access mode and serverless compute do not offer.
    assert cluster["data_security_mode"] in {"SINGLE_USER", "DATA_SECURITY_MODE_DEDICATED"}
    assert cluster["single_user_name"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:instance-profile/.+", cluster["aws_attributes"]["instance_profile_arn"])
    # Databricks Runtime 17.x: Spark 4.0 on Scala 2.13, the API line the project targets.
    major = int(cluster["spark_version"].split(".")[0])
    assert major >= 17 and cluster["spark_version"].endswith("scala2.13")
    assert job["timeout_seconds"] > 0


def test_the_databricks_check_catches_an_unknown_key_and_value():
    job = load("databricks-job.json")
    job["tasks"][0]["new_cluster"]["data_security_mod"] = "SINGLE_USER"
    assert databricks_round_trip(job) != job
    job = load("databricks-job.json")
    job["tasks"][0]["new_cluster"]["data_security_mode"] = "SHARED_BUT_CLASSIC"
    assert databricks_round_trip(job) != job


def test_databricks_job_runs_nightly_with_retries_and_failure_alerts():
    from zoneinfo import ZoneInfo

    job = load("databricks-job.json")
    schedule = job["schedule"]
    # Quartz: seconds minutes hours day-of-month month day-of-week [year]; one of the day fields is "?".
    fields = schedule["quartz_cron_expression"].split()
    assert len(fields) in (6, 7) and "?" in (fields[3], fields[5])
    ZoneInfo(schedule["timezone_id"])
    assert schedule["pause_status"] == "UNPAUSED" and job["max_concurrent_runs"] == 1
    [task] = job["tasks"]
    assert task["max_retries"] >= 1 and task["min_retry_interval_millis"] >= 60_000
    assert job["email_notifications"]["on_failure"] and job["webhook_notifications"]["on_failure"]


def test_eventbridge_schedule_passes_the_scheduler_model_and_its_target_the_emr_serverless_model():
    schedule = load("eventbridge-schedule.json")
    validate("scheduler", "CreateSchedule", schedule)
    assert re.fullmatch(r"cron\(\S+ \S+ \S+ \S+ \S+ \S+\)", schedule["ScheduleExpression"])
    target = schedule["Target"]
    # A universal target: the scheduler calls emr-serverless StartJobRun with the Input as its request.
    assert target["Arn"] == "arn:aws:scheduler:::aws-sdk:emrserverless:startJobRun"
    run = json.loads(target["Input"])
    validate("emr-serverless", "StartJobRun", run)
    # Each scheduled execution is one job run, even when the scheduler retries the call.
    assert run.pop("clientToken") == "<aws.scheduler.execution-id>"
    assert run == load("emr-serverless-start-job-run.json")  # the same run as the CLI example
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1 and target["DeadLetterConfig"]["Arn"]


def test_the_scheduler_check_catches_a_misspelt_target_key():
    from botocore.exceptions import ParamValidationError

    schedule = load("eventbridge-schedule.json")
    schedule["Target"]["RoleARN"] = schedule["Target"].pop("RoleArn")
    with pytest.raises(ParamValidationError, match="RoleARN"):
        validate("scheduler", "CreateSchedule", schedule)


def test_the_airflow_dag_parses_and_calls_the_providers_operators_with_the_checked_job_files():
    """Parse-checked (Airflow is not installed with the project; see the README's "Running nightly"): the
    file compiles, imports the operators from the Amazon and Databricks providers, and builds their
    arguments from the two job files the tests above check against the platforms' models."""
    import ast

    source = (CLUSTER / "airflow_dag.py").read_text()
    tree = ast.parse(source)
    compile(tree, "airflow_dag.py", "exec")
    imported = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert ("airflow.providers.amazon.aws.operators.emr", "EmrServerlessStartJobOperator") in imported
    assert ("airflow.providers.databricks.operators.databricks", "DatabricksSubmitRunOperator") in imported
    calls = {node.func.id: {k.arg for k in node.keywords} for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.endswith("Operator")}
    assert {"application_id", "execution_role_arn", "job_driver"} <= calls["EmrServerlessStartJobOperator"]
    assert {"databricks_conn_id", "tasks"} <= calls["DatabricksSubmitRunOperator"]
    for name in ("emr-serverless-start-job-run.json", "databricks-job.json"):
        assert f'"{name}"' in source and (CLUSTER / name).exists()
    dags = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DAG"]
    assert len(dags) == 2
    assert '"schedule": "0 2 * * *"' in source and '"max_active_runs": 1' in source


def test_the_airflow_dag_loads_in_airflows_dag_loader():
    """Runs where the airflow extra is installed (scripts/check_airflow_dag.py says how); skipped otherwise."""
    pytest.importorskip("airflow")
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_airflow_dag", REPO / "scripts" / "check_airflow_dag.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    dags, errors = check.load_dags()
    assert not errors
    assert {dag_id: [type(t).__name__ for t in dag.tasks] for dag_id, dag in dags.items()} == {
        "recsys_spark_nightly_emr_serverless": ["EmrServerlessStartJobOperator"],
        "recsys_spark_nightly_databricks": ["DatabricksSubmitRunOperator"]}
