"""Leases: one job at a time where two at once would step on each other (an ingestion's streaming
checkpoint, a batch job's output folder).

On a root on this machine's file system a lease is an exclusive ``flock`` on ``<root>/_locks/lease-<digest>.lock``
(:func:`~recsys_spark.writerlock.file_turn`, naming its holder): the system lets go of it when the holder's
process ends, however it ends, and taking one costs a system call where the Delta table below costs two
commits (~1.3 s a lease here, three leases a pipeline run).

Elsewhere (S3, any shared store) a lease is a row of the Delta table ``<root>/_leases`` (name, job id, host,
process id, time taken). Taking one is a compare-and-swap in a single Delta MERGE: insert the row when the
name has none, or replace the row of a holder seen dead; two jobs taking the same lease at once both MERGE
into one table, Delta lets one commit and the other retries and then sees the winner. A holder is dead when
it ran on this host and its process is gone (a killed job frees its leases at once), or, from another host,
when its lease is older than ``STALE_SECONDS``.

Either way a job that finds the lease held waits for it, up to ``wait`` seconds, then fails naming the holder.

>>> with lease(warehouse, "ingest", run.job_id):                     # doctest: +SKIP
...     ingest_everything()
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timezone

from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.datasets.warehouse import create_if_missing
from recsys_spark.errors import ConcurrentJobError, is_conflict
from recsys_spark.writerlock import file_turn, local_folder, pid_alive

log = logging.getLogger(__name__)
STALE_SECONDS = 6 * 3600  # a lease taken on another host longer ago than this is taken over
WAIT_SECONDS = 1800.0
LEASES_SCHEMA = T.StructType([
    T.StructField("name", T.StringType(), False),
    T.StructField("job_id", T.StringType(), False),
    T.StructField("host", T.StringType(), False),
    T.StructField("pid", T.LongType(), False),
    T.StructField("taken_at", T.TimestampType(), False),
])


def leases_path(warehouse) -> str:
    return f"{warehouse.root}/_leases"


def _alive(row) -> bool:
    if row.host == socket.gethostname():
        return pid_alive(row.pid)
    return time.time() - row.taken_at.timestamp() < STALE_SECONDS  # pyspark gives local naive times


def _holder(warehouse, name: str):
    rows = warehouse.spark.read.format("delta").load(leases_path(warehouse)).where(F.col("name") == name).collect()
    return rows[0] if rows else None


def _try_take(warehouse, name: str, job_id: str, dead: str | None) -> bool:
    """One compare-and-swap: take ``name`` if it has no holder, or if its holder is still ``dead``."""
    from delta.tables import DeltaTable

    spark = warehouse.spark
    mine = spark.createDataFrame([(name, job_id, socket.gethostname(), os.getpid(), datetime.now(timezone.utc))],
                                 LEASES_SCHEMA)
    merge = DeltaTable.forPath(spark, leases_path(warehouse)).alias("t").merge(mine.alias("s"), "t.name = s.name")
    if dead is not None:
        merge = merge.whenMatchedUpdateAll(condition=F.col("t.job_id") == F.lit(dead))
    try:
        metrics = merge.whenNotMatchedInsertAll().execute().first()
    except Exception as e:
        if is_conflict(e):  # another job took or released a lease meanwhile: look again
            return False
        raise
    return metrics.num_inserted_rows + metrics.num_updated_rows == 1


def acquire(warehouse, name: str, job_id: str, wait: float = WAIT_SECONDS, poll: float = 2.0) -> None:
    """Take the lease ``name`` for ``job_id``, waiting up to ``wait`` seconds for a live holder to finish."""
    spark = warehouse.spark
    create_if_missing(spark, leases_path(warehouse), LEASES_SCHEMA)
    deadline, waited = time.monotonic() + wait, False
    while True:
        holder = _holder(warehouse, name)
        if holder is None or not _alive(holder):
            if holder is not None:
                log.warning("lease %s: job %s (host %s, process %d) is gone; taking its lease over", name,
                            holder.job_id, holder.host, holder.pid)
            if _try_take(warehouse, name, job_id, None if holder is None else holder.job_id):
                return
            continue
        if time.monotonic() >= deadline:
            raise _in_use(name, holder.asDict(), wait)
        if not waited:
            _waiting(name, holder.asDict())
            waited = True
        time.sleep(poll)


def release(warehouse, name: str, job_id: str) -> None:
    """Give the lease back (only if ``job_id`` still holds it)."""
    from delta.tables import DeltaTable

    for _ in range(10):
        try:
            DeltaTable.forPath(warehouse.spark, leases_path(warehouse)).delete(
                (F.col("name") == name) & (F.col("job_id") == job_id))
            return
        except Exception as e:
            if not is_conflict(e):
                raise
    log.warning("could not release lease %s of job %s; the next job takes it over", name, job_id)


@contextmanager
def lease(warehouse, name: str, job_id: str, wait: float = WAIT_SECONDS):
    """Hold the lease ``name`` while the body runs (released even when it fails; a killed job's lease is
    taken over, see the module docstring)."""
    folder = local_folder(warehouse.root.rstrip("/"))
    if folder is not None:
        lock_file = f"{folder}/_locks/lease-{hashlib.sha256(name.encode()).hexdigest()[:16]}.lock"
        with file_turn(lock_file, {"job_id": job_id, "kind": "lease", "name": name}, wait,
                       lambda other: _in_use(name, other, wait), lambda other: _waiting(name, other)):
            yield
        return
    acquire(warehouse, name, job_id, wait)
    try:
        yield
    finally:
        release(warehouse, name, job_id)


def _waiting(name: str, holder: dict) -> None:
    log.warning("%s is in use by job %s (host %s, process %s); waiting for it to finish", name,
                holder.get("job_id", "?"), holder.get("host", "?"), holder.get("pid", "?"))


def _in_use(name: str, holder: dict, wait: float) -> ConcurrentJobError:
    taken = holder.get("taken_at")
    if isinstance(taken, (int, float)):
        taken = datetime.fromtimestamp(taken, timezone.utc)
    since = f", since {taken:%Y-%m-%d %H:%M:%S} UTC" if taken else ""
    return ConcurrentJobError(
        f"{name} is in use by job {holder.get('job_id', '?')} (host {holder.get('host', '?')}, process "
        f"{holder.get('pid', '?')}{since}); this job waited {wait:.0f} s and did nothing. Run it again when that "
        f"job has finished (a job that is no longer running frees it: at once on this host, after "
        f"{STALE_SECONDS // 3600} hours from another).")
