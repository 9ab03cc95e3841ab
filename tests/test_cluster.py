"""A real standalone cluster on 127.0.0.1: jobs submitted with spark-submit run on its executors."""

from __future__ import annotations

import pytest

from conftest import REPO

pytestmark = pytest.mark.cluster

CONFIG = """
dataset_group:
  name: cluster-group
  root: {root}
  schemas:
    interactions:
      fields:
        - {{name: USER_ID, type: string}}
        - {{name: ITEM_ID, type: string}}
        - {{name: TIMESTAMP, type: long}}
"""


def test_doctor_job_writes_and_reads_delta_on_the_cluster(cluster, write_config, tmp_path):
    config = write_config(CONFIG.format(root=tmp_path / "warehouse"))
    result = cluster.submit(REPO / "jobs" / "doctor.py", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "recsys-spark doctor: all good" in result.stdout
    assert f"master  {cluster.master_url}" in result.stdout
    assert "delta   delta-spark_2.13-" in result.stdout
    apps = cluster.status()["completedapps"]
    assert any(a["name"] == "recsys-spark doctor" and a["cores"] >= 1 for a in apps), apps


def test_failing_job_exits_non_zero_with_its_message(cluster, write_config):
    config = write_config(CONFIG.format(root="./w").replace("name: cluster-group", "name: 'bad name'"))
    result = cluster.submit(REPO / "jobs" / "doctor.py", "--config", str(config))
    assert result.returncode == 2, result.stderr[-3000:]
    # spark-submit passes the Python driver's stderr on through its own stdout.
    assert "dataset_group.name: 'bad name' is not a valid name" in result.stdout, result.stdout
    assert "Traceback" not in result.stdout


def test_import_job_on_the_cluster(cluster, spark, write_config, tmp_path):
    from recsys_spark.config import load_config
    from recsys_spark.datasets.warehouse import Warehouse

    data = tmp_path / "data"
    data.mkdir()
    (data / "interactions.csv").write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + "".join(
        f"u{i % 40},i{i % 13},{1_700_000_000 + i}\n" for i in range(500)) + "u1,i1,not-a-time\n")
    config = write_config(CONFIG.format(root=tmp_path / "warehouse") + f"""
imports:
  - {{dataset: interactions, source: {data}/interactions.csv}}
""")
    result = cluster.submit(REPO / "jobs" / "import_dataset.py", "--config", str(config))
    assert result.returncode == 0, result.stdout[-3000:]
    assert "import interactions (FULL)" in result.stdout and "500 accepted, 1 rejected" in result.stdout
    assert any(a["name"] == "recsys-spark import" for a in cluster.status()["completedapps"])
    # Read back what the cluster's job committed, from this test's own session.
    assert Warehouse(spark, load_config(config)).read("interactions").count() == 500


def test_the_pipeline_on_the_cluster(cluster, tmp_path):
    from test_batch import output_metrics
    from test_pipeline import synthetic_group

    config = synthetic_group(tmp_path, users=80)
    # The blocked ALS engine, whose blocks are solved in the executors' Python workers (auto would pick
    # the driver-local engine for so few interactions).
    config.write_text(config.read_text().replace("iterations: 4}", "iterations: 4, engine: blocked}"))
    result = cluster.submit(REPO / "jobs" / "run_pipeline.py", "--config", str(config), "--steps",
                            "import,train,batch", timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "weekly-mail" in result.stdout and "FAILED" not in result.stdout
    assert "user-personalization: blocked engine" in result.stdout
    weekly = tmp_path / "out" / "synthetic-ecommerce" / "weekly-mail"
    assert (weekly / "_SUCCESS").exists()
    metrics = output_metrics(weekly)
    assert metrics["users_in"] == metrics["users_served"] == 80 and metrics["executor_run_seconds"] > 0
    assert any(a["name"] == "recsys-spark pipeline" for a in cluster.status()["completedapps"])
