"""S3 faults through S3A's real client: a fault-injecting proxy (``tests/s3_faults.py``) on 127.0.0.1 in front
of the moto S3 server throttles (503 SlowDown) or goes away mid-job and comes back. Within S3A's retry
limits the job succeeds; past them it fails with a clear error and no table shows anything half-committed."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from datasets_helpers import SCHEMAS, write
from recsys_spark.cli import _report
from recsys_spark.config import load_config
from recsys_spark.datasets.importer import run_imports
from recsys_spark.datasets.warehouse import Warehouse
from s3_faults import FaultProxy

pytestmark = pytest.mark.s3

# Short, bounded retries for the faulty bucket only (the session's other buckets keep theirs).
RETRIES = {"retry.limit": "3", "retry.interval": "200ms", "retry.throttle.limit": "4",
           "retry.throttle.interval": "100ms", "attempts.maximum": "2", "connection.establish.timeout": "2s",
           "connection.timeout": "5s"}


@pytest.fixture
def faulty(spark, s3_endpoint, s3_client, write_config):
    """A bucket reached through the proxy; yields (proxy, config rooted in that bucket)."""
    proxy = FaultProxy(s3_endpoint).start()
    bucket = f"faulty-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    keys = {f"fs.s3a.bucket.{bucket}.{k}": v for k, v in {"endpoint": proxy.url, **RETRIES}.items()}
    for k, v in keys.items():
        conf.set(k, v)
    config = load_config(write_config(SCHEMAS.format(root=f"s3a://{bucket}/warehouse")))
    try:
        yield proxy, config
    finally:
        proxy.stop()
        for k in keys:
            conf.unset(k)


def users(tmp_path, name: str, count: int) -> str:
    return write(tmp_path / name, "USER_ID,GENDER,AGE\n" + "".join(f"u{k},F,{20 + k % 50}\n" for k in range(count)))


def test_throttling_within_s3a_limits_is_retried_and_the_job_succeeds(spark, faulty, tmp_path):
    proxy, config = faulty
    proxy.throttle_every = 8  # one request in eight answered 503 SlowDown (each costs a backoff)
    [result] = run_imports(spark, config, "users", users(tmp_path, "u.csv", 50))
    assert result.accepted == 50 and proxy.throttled > 5
    proxy.throttle_every = 0
    assert Warehouse(spark, config).read("users").count() == 50


def test_throttling_past_the_limits_fails_clearly_and_commits_nothing(spark, faulty, tmp_path, capsys):
    proxy, config = faulty
    run_imports(spark, config, "users", users(tmp_path, "u.csv", 50))
    warehouse = Warehouse(spark, config)
    version = warehouse.version("users")
    proxy.throttle_every = 1  # every request
    with pytest.raises(Exception) as e:  # whatever Spark wraps it in: its text is what counts
        run_imports(spark, config, "users", users(tmp_path, "more.csv", 80))
    _report(e.value, verbose=False, hint=True)
    message = capsys.readouterr().err
    assert "S3 kept answering 503 SlowDown (throttling) past S3A's retries" in message, message
    assert f"s3a://{config.root[len('s3a://'):].split('/')[0]}/" in message
    proxy.throttle_every = 0
    assert warehouse.version("users") == version and warehouse.read("users").count() == 50


def test_a_server_that_goes_away_mid_job_and_comes_back(spark, faulty, tmp_path, capsys):
    """The server stops answering during an import: back within S3A's retries the import succeeds; away for
    longer it fails clearly and the table stays at its previous version, and the rerun succeeds."""
    proxy, config = faulty
    warehouse = Warehouse(spark, config)
    run_imports(spark, config, "users", users(tmp_path, "u.csv", 50))
    version = warehouse.version("users")

    def outage(after: int, seconds: float):
        start = proxy.requests + after

        def maybe_stop(count):
            if count == start:  # stop listening from another thread; restart after `seconds`
                def cycle():
                    proxy.stop()
                    time.sleep(seconds)
                    proxy.start()
                threading.Thread(target=cycle, daemon=True).start()
        proxy.on_request = maybe_stop

    outage(after=15, seconds=0.5)  # shorter than S3A's retries
    [result] = run_imports(spark, config, "users", users(tmp_path, "more.csv", 80))
    assert result.accepted == 80 and warehouse.version("users") == version + 1
    version += 1

    outage(after=15, seconds=30)  # longer than S3A's retries
    with pytest.raises(Exception) as e:
        run_imports(spark, config, "users", users(tmp_path, "again.csv", 120))
    _report(e.value, verbose=False, hint=True)
    message = capsys.readouterr().err
    assert "S3 could not be reached past S3A's retries" in message, message
    deadline = time.monotonic() + 60
    while proxy._server is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proxy.on_request = None
    assert warehouse.version("users") == version and warehouse.read("users").count() == 80
    [result] = run_imports(spark, config, "users", users(tmp_path, "again.csv", 120))
    assert result.accepted == 120 and warehouse.read("users").count() == 120
