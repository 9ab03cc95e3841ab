"""The cluster bundle runs where the build machine never was.

scripts/build_bundle.sh packs the environment with this interpreter; a worker of the standalone cluster
on 127.0.0.1 and configs/cluster/spark-submit.sh (as written) then run in a private mount namespace where
that interpreter's prefix and the development virtual environment are empty file systems. The system's own
Python of the same minor version (/usr/bin/python3.X) stands for the nodes' interpreter. The pipeline
(import, train, batch) and doctor run on s3:// paths of the S3 server on 127.0.0.1. A bundle that links
back to the build machine cannot start a single Python process there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import S3_ENV, cluster_env, free_port, spark_home

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.cluster, pytest.mark.s3]

MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"
NODE_PREFIX = Path("/usr")  # the nodes' interpreter: /usr/bin/python3.X
BUILD_PREFIX = Path(sys.base_prefix)  # this interpreter's installation, hidden from the cluster
DEV_VENV = Path(sys.prefix)
BUCKET = "bundle-bucket"
# Mounts made inside the namespace: Spark itself stays reachable (the cluster supplies it) through a bind
# mount made before the development environment that holds it is covered.
HIDE = """set -e
mount --bind "$SPARK_REAL" "$SPARK_HOME"
for d in $HIDDEN; do mount -t tmpfs -o size=1m,ro tmpfs "$d"; done
exec "$@"
"""


def hidden_env(tmp: Path, spark_view: Path) -> dict[str, str]:
    env = {k: v for k, v in cluster_env().items() if k not in ("PYSPARK_PYTHON", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not p.startswith((str(BUILD_PREFIX), str(DEV_VENV), str(Path.home() / ".pyenv"))))
    return {**env, **S3_ENV, "SPARK_REAL": str(spark_home()), "SPARK_HOME": str(spark_view),
            "HIDDEN": f"{BUILD_PREFIX} {DEV_VENV}"}


def in_namespace(script: Path) -> list[str]:
    return ["unshare", "--mount", "--propagation", "private", "sh", str(script)]


@pytest.fixture
def hidden_worker(cluster, tmp_path):
    """A second worker of the session's cluster, started inside the private mount namespace. It offers a
    custom resource, `bundle`, that only the bundle's applications ask for, so their executors run here
    and nowhere else."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("hiding the build interpreter needs root and unshare (a private mount namespace)")
    if BUILD_PREFIX == NODE_PREFIX or not (NODE_PREFIX / "bin" / f"python{MINOR}").exists():
        pytest.skip(f"needs /usr/bin/python{MINOR} besides the build interpreter in {BUILD_PREFIX}")
    spark_view = tmp_path / "spark"
    spark_view.mkdir()
    hide = tmp_path / "hide.sh"
    hide.write_text(HIDE)
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps([{"id": {"componentName": "spark.worker", "resourceName": "bundle"},
                                      "addresses": ["0"]}]))
    work = tmp_path / "worker"
    env = {**hidden_env(tmp_path, spark_view),
           "SPARK_WORKER_OPTS": f"-Dspark.worker.resource.bundle.amount=1 -Dspark.worker.resourcesFile={resources}"}
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - open for the worker's whole life
    before = {w["id"] for w in cluster.status()["workers"]}
    proc = subprocess.Popen(
        [*in_namespace(hide), str(spark_view / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker",
         "--host", "127.0.0.1", "--cores", "2", "--memory", "2g", "--webui-port", str(free_port()),
         "--work-dir", str(work), cluster.master_url],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any(w["id"] not in before and w["state"] == "ALIVE" for w in cluster.status()["workers"]):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.5)
        yield hide, env, work
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_the_bundle_runs_the_pipeline_and_doctor_on_s3_with_the_build_python_hidden(
        hidden_worker, cluster, s3_endpoint, s3_client, tmp_path):
    hide, env, work = hidden_worker
    started = time.monotonic()
    dist, build = tmp_path / "dist", tmp_path / "build"
    subprocess.run(["bash", str(REPO / "scripts" / "build_bundle.sh")], check=True, capture_output=True,
                   timeout=900, env={**os.environ, "PYTHON": str(BUILD_PREFIX / "bin" / f"python{MINOR}"),
                                     "PYTHON_PREFIX": str(NODE_PREFIX), "DIST": str(dist), "BUILD": str(build),
                                     "COMPRESS_LEVEL": "1"})
    shutil.rmtree(build)  # nothing of the build may be left to fall back on
    built = time.monotonic()

    data = tmp_path / "data"
    subprocess.run([sys.executable, str(REPO / "scripts" / "generate_synthetic.py"), "--out", str(data),
                    "--users", "200", "--items", "100", "--batch-users", "50"], check=True, capture_output=True)
    s3_client.create_bucket(Bucket=BUCKET)
    for name in ("users.csv", "items.csv", "interactions.csv", "related-items.jsonl"):
        s3_client.upload_file(str(data / name), BUCKET, f"recsys/data/synthetic/{name}")

    options = [x for k, v in {
        "spark.executor.resource.bundle.amount": 1, "spark.task.resource.bundle.amount": 0.5,
        "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1", "spark.ui.enabled": "false",
        "spark.executor.memory": "1g", "spark.sql.shuffle.partitions": 4,
        "spark.databricks.delta.snapshotPartitions": 2,  # Delta's log replay in the worker's cores' worth of tasks
        "spark.hadoop.fs.s3a.endpoint": s3_endpoint, "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
        "spark.hadoop.fs.s3a.path.style.access": "true", "spark.hadoop.fs.s3a.multiobjectdelete.enable": "false",
        "spark.hadoop.fs.s3a.attempts.maximum": 1, "spark.hadoop.fs.s3a.retry.limit": 1}.items()
               for x in ("--conf", f"{k}={v}")]
    from recsys_spark.jars import local_jar_paths

    submit_env = {**env, "MASTER": cluster.master_url, "DIST": str(dist), "DRIVER_ENV": str(tmp_path / "driver-env"),
                  "NODE_JARS": os.pathsep.join(local_jar_paths()), "RECSYS_BUCKET": BUCKET}
    config = "configs/cluster/synthetic-ecommerce-s3.yaml"

    def submit(*job: str) -> subprocess.CompletedProcess:
        return subprocess.run([*in_namespace(hide), "bash", str(REPO / "configs" / "cluster" / "spark-submit.sh"),
                               *options, *(("--", *job) if job else ())],
                              capture_output=True, text=True, timeout=900, env=submit_env, cwd=tmp_path,
                              check=False)

    pipeline = submit("jobs/run_pipeline.py", "--config", config, "--steps", "import,train,batch")
    ran = time.monotonic()
    assert pipeline.returncode == 0, pipeline.stdout[-3000:] + pipeline.stderr[-3000:]
    assert "FAILED" not in pipeline.stdout and "weekly-mail" in pipeline.stdout and "related-items" in pipeline.stdout
    read = lambda key: json.loads(s3_client.get_object(Bucket=BUCKET, Key=key)["Body"].read())  # noqa: E731
    manifest = read("recsys/out/weekly-mail/_manifest.json")  # the committed run's files and metrics
    metrics = read(f"recsys/out/weekly-mail/{manifest['metrics']}")
    assert metrics["users_in"] == metrics["users_served"] == 200
    assert s3_client.head_object(Bucket=BUCKET, Key="recsys/out/related-items/_SUCCESS")

    doctor = submit("jobs/doctor.py", "--config", config)
    assert doctor.returncode == 0, doctor.stdout[-3000:] + doctor.stderr[-3000:]
    out = doctor.stdout
    assert "recsys-spark doctor: all good" in out and "mismatches: none" in out, out[-5000:]
    assert f"s3://{BUCKET}/recsys/warehouse/synthetic-ecommerce/_doctor/" in out
    # The driver ran the unpacked bundle; the executor its own copy, in the hidden worker's folder.
    assert f"python on the driver: {tmp_path / 'driver-env' / 'bin' / 'python'}" in out
    executor = re.search(r"python on executor \S+: (\S+)", out).group(1)
    assert executor.startswith(str(work)) and executor.endswith("/environment/bin/python"), executor
    assert re.search(rf"^  python +({MINOR}\.\d+) +\1$", out, re.MULTILINE), out  # /usr/bin/python3.X both
    assert re.search(r"^  delta\.tables +(\S+) +\1$", out, re.MULTILINE), out
    print(f"bundle built in {built - started:.0f} s; pipeline {ran - built:.0f} s; doctor "
          f"{time.monotonic() - ran:.0f} s")
