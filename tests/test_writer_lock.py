"""Jobs on an S3 root take turns through a DynamoDB item (``s3.lock_table``), against moto's server on
127.0.0.1 (the same server as the S3 API): waiting, failing with the holder named, renewal, take-over from a
killed holder, and two imports from two Spark applications at once on one S3 root."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from conftest import REPO
from datasets_helpers import SCHEMAS
from recsys_spark.config import S3Settings, load_config
from recsys_spark.datasets.importer import run_imports
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.errors import ConcurrentJobError, UserError
from recsys_spark.writerlock import dynamodb, lock_applies, root_lock

pytestmark = pytest.mark.s3
ROOT = "s3://lock-bucket/wh"


def settings(endpoint: str, table: str, wait_minutes: float = 0.05) -> S3Settings:
    return S3Settings(endpoint=endpoint, region="us-east-1", path_style_access=True, lock_table=table,
                      lock_endpoint=endpoint, lock_wait_minutes=wait_minutes)


def holder_process(endpoint: str, table: str, ttl: float = 120.0, hold: float = 60.0) -> subprocess.Popen:
    """Another process that takes the root as job ``other-job`` and holds it ``hold`` seconds."""
    code = textwrap.dedent(f"""
        import time, types
        from recsys_spark import writerlock
        from recsys_spark.config import S3Settings
        writerlock.TTL_SECONDS = {ttl}
        s3 = S3Settings(region="us-east-1", lock_table={table!r}, lock_endpoint={endpoint!r})
        with writerlock.root_lock(types.SimpleNamespace(root={ROOT!r}, s3=s3), "other-job", "import"):
            print("held", flush=True)
            time.sleep({hold})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def item(endpoint: str, table: str) -> dict | None:
    """The root's item in ``table`` as plain strings (None when the table or the item does not exist)."""
    client = dynamodb(settings(endpoint, table))
    try:
        found = client.get_item(TableName=table, Key={"root": {"S": ROOT}}).get("Item")
    except client.exceptions.ResourceNotFoundException:
        return None
    return {k: next(iter(v.values())) for k, v in found.items()} if found else None


def test_only_s3_roots_with_a_lock_table_take_turns(s3_endpoint):
    s3 = settings(s3_endpoint, "locks-a")
    assert lock_applies(SimpleNamespace(root=ROOT, s3=s3))
    assert not lock_applies(SimpleNamespace(root="/data/wh", s3=s3))
    assert not lock_applies(SimpleNamespace(root=ROOT, s3=S3Settings()))


def test_a_lock_table_without_a_region_is_a_clear_error(monkeypatch):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(UserError, match=r"s3.lock_table locks: no AWS region for DynamoDB; set s3.region"):
        dynamodb(S3Settings(lock_table="locks"))


def test_a_job_waits_for_the_holder_fails_naming_it_and_takes_over_from_a_killed_one(s3_endpoint):
    config = SimpleNamespace(root=ROOT, s3=settings(s3_endpoint, "locks-b"))
    other = holder_process(s3_endpoint, "locks-b")
    try:
        started = time.monotonic()
        with pytest.raises(ConcurrentJobError, match=r"job other-job \(import, host .*, process \d+\) held the root"):
            with root_lock(config, "this-job", "ingest"):
                pass
        assert time.monotonic() - started >= 3  # it waited lock_wait_minutes (0.05) first
        assert item(s3_endpoint, "locks-b")["job_id"] == "other-job"
        os.kill(other.pid, signal.SIGKILL)
        other.wait()
        with root_lock(config, "this-job", "ingest"):  # its process is gone: taken over at once
            assert item(s3_endpoint, "locks-b")["job_id"] == "this-job"
            with root_lock(config, "this-job", "train"):  # a job inside this one (a pipeline's step)
                pass
            assert item(s3_endpoint, "locks-b")["job_id"] == "this-job"
        assert item(s3_endpoint, "locks-b") is None  # given back
    finally:
        other.kill()
        other.wait()


def test_the_holder_renews_its_turn_and_a_waiter_gets_it_when_given_back(s3_endpoint):
    config = SimpleNamespace(root=ROOT, s3=settings(s3_endpoint, "locks-c", wait_minutes=1))
    # Held for 7 s with a 3 s time-to-live: without renewal the waiter would take it after 3 s.
    other = holder_process(s3_endpoint, "locks-c", ttl=3.0, hold=7.0)
    try:
        started = time.monotonic()
        with root_lock(config, "this-job", "batch"):
            waited = time.monotonic() - started
            assert item(s3_endpoint, "locks-c")["job_id"] == "this-job"
        assert other.wait(timeout=30) == 0
        assert 5 <= waited < 20, waited
    finally:
        other.kill()
        other.wait()


INTERACTIONS = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n" + "".join(
    f"{{who}}{n},i{n % 7},{1_700_000_000 + n},view\n" for n in range(40))


def test_two_imports_from_two_spark_applications_take_turns_on_one_s3_root(spark, s3_client, s3_endpoint,
                                                                              tmp_path):
    """One import as its own process (its own Spark application), one in this process, at once: both
    files' rows are in the table and the two jobs' records do not overlap in time."""
    s3_client.create_bucket(Bucket="lock-bucket")
    text = SCHEMAS.format(root=ROOT) + f"""
s3: {{endpoint: "{s3_endpoint}", region: us-east-1, path_style_access: true, lock_table: locks-d,
      lock_endpoint: "{s3_endpoint}", lock_wait_minutes: 5}}
spark: {{master: "local[1]", conf: {{spark.ui.enabled: false, spark.sql.shuffle.partitions: 2}}}}
"""
    (tmp_path / "c.yaml").write_text(text)
    for who in ("a", "b"):
        (tmp_path / f"{who}.csv").write_text(INTERACTIONS.replace("{who}", who))
    config = load_config(tmp_path / "c.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "recsys_spark", "import", "--config", str(tmp_path / "c.yaml"),
                             "--dataset", "interactions", "--source", str(tmp_path / "b.csv"), "--mode",
                             "INCREMENTAL"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120  # start once the other holds the root (its JVM is up)
        while item(s3_endpoint, "locks-d") is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        run_imports(spark, config, "interactions", str(tmp_path / "a.csv"), "INCREMENTAL")
        out = proc.communicate(timeout=300)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out[-3000:]
    wh = Warehouse(spark, config)
    users = {r.USER_ID for r in wh.read("interactions").select("USER_ID").collect()}
    assert users == {f"{w}{n}" for w in "ab" for n in range(40)}
    jobs = sorted(spark.read.format("delta").load(f"{ROOT}/_jobs").collect(), key=lambda r: r.started_at)
    assert [(r.kind, r.status) for r in jobs] == [("import", "SUCCEEDED")] * 2
    assert jobs[0].ended_at <= jobs[1].started_at  # one after the other
    assert item(s3_endpoint, "locks-d") is None
