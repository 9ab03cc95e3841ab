"""A real standalone cluster on 127.0.0.1: jobs submitted with spark-submit run on its executors."""

from __future__ import annotations

import re
import sys
from pathlib import Path

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
    # One executor (the worker's), reached by a Python task that imported everything the jobs need.
    assert "python  1 executor(s) ran a Python task" in result.stdout and "mismatches: none" in result.stdout
    assert re.search(r"^  numpy +(\S+) +\1$", result.stdout, re.MULTILINE), result.stdout
    apps = cluster.status()["completedapps"]
    assert any(a["name"] == "recsys-spark doctor" and a["cores"] >= 1 for a in apps), apps


def test_doctor_names_what_the_executors_python_lacks(cluster, write_config, tmp_path):
    """Executors on a bare system Python (same minor version, none of the packages): doctor fails and names
    each missing module; the probe itself still runs there, shipped by value."""
    bare = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not bare.exists() or Path(sys.base_prefix) == Path("/usr"):
        pytest.skip(f"needs a system {bare.name} besides this environment's")
    config = write_config(CONFIG.format(root=tmp_path / "warehouse"))
    result = cluster.submit(REPO / "jobs" / "doctor.py", "--config", str(config),
                            conf={"spark.pyspark.python": str(bare), "spark.pyspark.driver.python": sys.executable})
    assert result.returncode == 2, result.stdout[-3000:]
    assert "error: doctor: the executors' Python differs from the driver's" in result.stdout
    assert "recsys_spark MISSING: ModuleNotFoundError: No module named 'recsys_spark'" in result.stdout
    assert "numpy MISSING: ModuleNotFoundError" in result.stdout


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


LAUNCHED = """
import json
from recsys_spark.config import S3Settings
from recsys_spark.session import get_spark

# As a job does: the config's spark.conf and S3 settings (path-style access off by default).
spark = get_spark("conf-precedence", conf={"spark.sql.shuffle.partitions": 7, "spark.sql.ansi.enabled": False},
                  s3=S3Settings())
hadoop = spark.sparkContext._jsc.hadoopConfiguration()
print(json.dumps({**{k: spark.conf.get(k, None) for k in (
    "spark.sql.shuffle.partitions", "spark.sql.session.timeZone", "spark.sql.ansi.enabled",
    "spark.sql.extensions")}, **{k: hadoop.get(k) for k in ("fs.s3a.path.style.access", "fs.s3.impl")}}))
"""


@pytest.mark.spark
def test_under_spark_submit_the_user_s_conf_wins(tmp_path):
    import json
    import subprocess

    from conftest import cluster_env, spark_home

    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    # A cluster whose Hadoop configuration already serves s3:// (as EMR's core-site.xml does with EMRFS).
    hadoop_conf = tmp_path / "hadoop-conf"
    hadoop_conf.mkdir()
    (hadoop_conf / "core-site.xml").write_text(
        "<configuration><property><name>fs.s3.impl</name><value>com.example.PlatformS3FileSystem</value>"
        "</property></configuration>")
    result = subprocess.run(
        [str(spark_home() / "bin" / "spark-submit"), "--master", "local[1]", "--conf", "spark.ui.enabled=false",
         "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
         "--conf", "spark.sql.shuffle.partitions=3", "--conf", "spark.sql.session.timeZone=America/New_York",
         "--conf", "spark.hadoop.fs.s3a.path.style.access=true", str(script)],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
        env={**cluster_env(), "HADOOP_CONF_DIR": str(hadoop_conf), "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["spark.sql.shuffle.partitions"] == "3"  # the user's --conf over the config's spark.conf
    assert seen["spark.sql.session.timeZone"] == "America/New_York"  # ... over the package's default
    assert seen["fs.s3a.path.style.access"] == "true"  # ... over the config's S3 settings
    assert seen["spark.sql.ansi.enabled"] == "false"  # the config fills what the user left unset
    assert seen["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"  # and the package's
    assert seen["fs.s3.impl"] == "com.example.PlatformS3FileSystem"  # the platform's s3:// is kept
