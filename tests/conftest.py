"""Shared fixtures: one local Spark session for the whole run, a real S3 API server (moto) on 127.0.0.1,
and a real standalone Spark cluster (master + worker processes) on 127.0.0.1 for tests that need one.

Every server binds to 127.0.0.1 only and is stopped at the end of the run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Fake credentials for the local S3 server, read by boto3 and by S3A's default (environment) chain.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
          "AWS_DEFAULT_REGION": "us-east-1"}


SPARK_FIXTURES = {"spark", "cluster"}


def pytest_collection_modifyitems(config, items):
    """Mark every test that needs a Spark session or cluster ``spark``, so ``-m "not spark"`` (``make
    test-fast``) runs the rest: the core, config, filters' language, the CLI's Spark-free commands."""
    for item in items:
        if SPARK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.spark)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def spark_scratch(tmp_path_factory):
    """Spark's scratch folders (an application's copy of the jars, ~0.5 GB; its block files) under the test
    run's temporary folder, for this process and every one it starts: a process a test kills leaves them
    behind, and pytest's removal of old runs then takes them, where under /tmp they piled up (~4 GB a run)."""
    folder, before = tmp_path_factory.mktemp("spark-scratch"), os.environ.get("SPARK_LOCAL_DIRS")
    os.environ["SPARK_LOCAL_DIRS"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("SPARK_LOCAL_DIRS", None)
    else:
        os.environ["SPARK_LOCAL_DIRS"] = before


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1 (its real HTTP API); yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    os.environ.update(S3_ENV)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_client(s3_endpoint):
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture(scope="session")
def spark(spark_scratch, s3_endpoint, tmp_path_factory):
    """The one local SparkSession of the test run, built by the package's own session builder (its scratch
    folders: ``spark_scratch``)."""
    from recsys_spark.config import S3Settings
    from recsys_spark.errors import UserError
    from recsys_spark.session import get_spark

    conf = {
        "spark.ui.enabled": False,
        "spark.sql.shuffle.partitions": 2,
        "spark.default.parallelism": 2,
        "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("spark-warehouse")),
        # moto has no bulk delete; S3A falls back to single deletes.
        "spark.hadoop.fs.s3a.multiobjectdelete.enable": False,
        "spark.hadoop.fs.s3a.attempts.maximum": 1,
        "spark.hadoop.fs.s3a.retry.limit": 1,
    }
    s3 = S3Settings(endpoint=s3_endpoint, region="us-east-1", path_style_access=True)
    try:
        session = get_spark("recsys-spark-tests", master="local[2]", conf=conf, s3=s3)
    except UserError as e:  # e.g. jars not fetched: one clear failure instead of every test erroring
        pytest.exit(f"cannot start Spark for the tests: {e}", returncode=1)
    yield session
    session.stop()


@dataclass
class Cluster:
    """A running standalone cluster: ``master_url`` to submit to, ``submit()`` to run a job on it."""

    master_url: str
    web_url: str
    work_dir: Path

    def submit(self, script: str | Path, *args: str, timeout: float = 300,
               conf: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """spark-submit ``script`` (with the package's local Delta jars) to the cluster; capture output.
        ``conf`` adds or replaces --conf settings."""
        from recsys_spark.jars import local_jar_paths

        settings = {"spark.pyspark.python": sys.executable, "spark.driver.host": "127.0.0.1",
                    "spark.driver.bindAddress": "127.0.0.1", "spark.ui.enabled": "false",
                    "spark.executor.memory": "1g",
                    # Delta's log replay in as many tasks as the test cluster has cores, not its default 50.
                    "spark.databricks.delta.snapshotPartitions": "2", **(conf or {})}
        cmd = [str(spark_home() / "bin" / "spark-submit"), "--master", self.master_url,
               "--jars", ",".join(local_jar_paths(with_s3=False)),
               *(x for k, v in settings.items() for x in ("--conf", f"{k}={v}")),
               str(script), *args]
        # The driver runs this checkout's package (spark-submit puts the script's folder, jobs/, first).
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env={**cluster_env(), "PYTHONPATH": str(REPO)})

    def status(self) -> dict:
        with urllib.request.urlopen(f"{self.web_url}/json/", timeout=5) as r:
            return json.load(r)


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def cluster_env() -> dict[str, str]:
    return {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A standalone Spark master and one worker (2 cores), separate processes on 127.0.0.1.

    Started from the pyspark package's ``bin/spark-class``; stopped by process id at the end of the run.
    """
    work = tmp_path_factory.mktemp("cluster")
    port, web, worker_web = free_port(), free_port(), free_port()
    spark_class = str(spark_home() / "bin" / "spark-class")
    logs, procs = [], []

    def start(name: str, *args: str) -> None:
        log = open(work / f"{name}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen([spark_class, *args], stdout=log, stderr=subprocess.STDOUT,
                                      env=cluster_env(), start_new_session=True))

    start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
          "--webui-port", str(web))
    start("worker", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "2",
          "--memory", "2g", "--webui-port", str(worker_web), "--work-dir", str(work / "work"),
          f"spark://127.0.0.1:{port}")
    running = Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{web}", work)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if running.status().get("aliveworkers", 0) >= 1:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("the standalone cluster did not start:\n"
                                   + "\n".join((work / f"{n}.log").read_text()[-2000:] for n in ("master", "worker")))
            time.sleep(0.5)
        yield running
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for log in logs:
            log.close()


@pytest.fixture
def write_config(tmp_path):
    """Write a YAML config (text) into a temporary folder and return its path."""

    def write(text: str, name: str = "pipeline.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
