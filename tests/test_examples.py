"""The cluster examples (spark-submit, EMR, EMR Serverless, Databricks) cannot run here: they are checked
by construction. Every file parses, every entry point exists, every referenced script and config is in the
repository, and the configs they name load."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

import pytest

from conftest import REPO
from recsys_spark.cli import cli
from recsys_spark.config import load_config

CLUSTER = REPO / "configs" / "cluster"
ARTIFACTS = "s3://my-bucket/recsys/artifacts/"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
WHEEL = f"recsys_spark-{PROJECT['version']}-py3-none-any.whl"


def in_repo(uri: str) -> bool:
    """An artifact URI or workspace path whose tail (jobs/..., configs/...) is a file of this repository."""
    match = re.search(r"((?:jobs|configs)/.+)$", uri)
    return bool(match) and (REPO / match.group(1)).is_file()


def test_emr_step_runs_the_pipeline_job_with_the_packed_environment():
    [step] = json.loads((CLUSTER / "emr-step.json").read_text())
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    args = step["HadoopJarStep"]["Args"]
    assert args[0] == "spark-submit"
    script = next(a for a in args if a.endswith(".py"))
    assert script.startswith(ARTIFACTS) and in_repo(script) and script.endswith("jobs/run_pipeline.py")
    assert any(f.endswith(WHEEL) for f in args[args.index("--py-files") + 1].split(","))
    assert in_repo(args[args.index("--config") + 1])
    confs = dict(a.split("=", 1) for a in args if a.startswith("spark."))
    assert confs["spark.archives"].endswith("recsys-spark-env.tar.gz#environment")
    assert confs["spark.yarn.appMasterEnv.PYSPARK_PYTHON"] == "./environment/bin/python"
    assert "io.delta.sql.DeltaSparkSessionExtension" == confs["spark.sql.extensions"]


def test_emr_serverless_job_driver():
    run = json.loads((CLUSTER / "emr-serverless-start-job-run.json").read_text())
    driver = run["jobDriver"]["sparkSubmit"]
    assert in_repo(driver["entryPoint"]) and driver["entryPoint"].endswith("jobs/run_pipeline.py")
    arguments = driver["entryPointArguments"]
    assert in_repo(arguments[arguments.index("--config") + 1])
    params = driver["sparkSubmitParameters"]
    assert "#environment" in params and WHEEL in params and "./environment/bin/python" in params


def test_databricks_job_uses_the_wheels_entry_point():
    job = json.loads((CLUSTER / "databricks-job.json").read_text())
    [task] = job["tasks"]
    wheel_task = task["python_wheel_task"]
    assert wheel_task["package_name"] == PROJECT["name"]
    assert PROJECT["scripts"][wheel_task["entry_point"]] == "recsys_spark.cli:entry"
    command, sub, *rest = wheel_task["parameters"]
    assert command in cli.commands and sub in cli.commands[command].commands
    assert in_repo(rest[rest.index("--config") + 1])
    assert task["libraries"][0]["whl"].endswith(WHEEL)


@pytest.mark.parametrize("script", ["configs/cluster/spark-submit.sh", "scripts/build_bundle.sh"])
def test_shell_examples_parse_and_name_existing_files(script):
    text = (REPO / script).read_text()
    subprocess.run(["bash", "-n", str(REPO / script)], check=True)
    for path in re.findall(r"\b((?:jobs|configs)/[\w./-]+\.(?:py|yaml))", text):
        assert (REPO / path).is_file(), path


def test_the_cluster_config_loads(monkeypatch):
    monkeypatch.setenv("RECSYS_BUCKET", "my-bucket")
    config = load_config(CLUSTER / "synthetic-ecommerce-s3.yaml")
    assert config.root == "s3://my-bucket/recsys/warehouse/synthetic-ecommerce"
    assert {j.name for j in config.batch_jobs} == {"weekly-mail", "related-items"}


def test_every_job_script_runs_a_real_command():
    for script in (REPO / "jobs").glob("*.py"):
        words = re.search(r'run_job\(([^)]*)\)', script.read_text()).group(1)
        command, *sub = [w.strip().strip('"') for w in words.split(",")]
        assert command in cli.commands, script
        if sub:
            assert sub[0] in cli.commands[command].commands, script
