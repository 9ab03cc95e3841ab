"""The job history: one row per job run in ``<root>/_jobs`` (kind, name, status, times, inputs, counts,
metrics), written when the run ends: SUCCEEDED, FAILED, or SKIPPED (nothing worth doing, as a training
whose data did not change).

>>> with job_run(warehouse, "import", "interactions", {"source": src}) as run:   # doctest: +SKIP
...     run.counts["accepted"] = 1000
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pyspark.sql import types as T

from recsys_spark.errors import is_conflict
from recsys_spark.writerlock import root_lock

log = logging.getLogger(__name__)
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"

JOBS_SCHEMA = T.StructType([
    T.StructField("job_id", T.StringType(), False),
    T.StructField("kind", T.StringType(), False),
    T.StructField("name", T.StringType(), True),
    T.StructField("status", T.StringType(), False),
    T.StructField("started_at", T.TimestampType(), False),
    T.StructField("ended_at", T.TimestampType(), False),
    T.StructField("seconds", T.DoubleType(), False),
    T.StructField("inputs", T.StringType(), True),
    T.StructField("counts", T.MapType(T.StringType(), T.LongType()), True),
    T.StructField("metrics", T.StringType(), True),
    T.StructField("error", T.StringType(), True),
])


def new_job_id(kind: str) -> str:
    """``import-20261129T142501-3fa2c1``: sortable by time, unique across concurrent runs."""
    return f"{kind}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass
class JobRun:
    """What a running job reports: fill ``counts`` and ``metrics`` while it runs."""

    kind: str
    name: str | None
    inputs: dict
    job_id: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    status: str = "SUCCEEDED"  # or SKIPPED: the job found nothing worth doing (its metrics say why)

    def __post_init__(self):
        self.job_id = self.job_id or new_job_id(self.kind)


@contextmanager
def job_run(warehouse, kind: str, name: str | None, inputs: dict, job_id: str = "", rows: list | None = None):
    """Run a job body and append its row to ``_jobs`` at the end: SUCCEEDED, or FAILED with the error. With
    ``rows``, the row is added to that list instead, for :func:`append_rows` to write with others in one
    commit (a run of many short actions: each append is a Spark job and a Delta commit, ~0.4 s here)."""
    run = JobRun(kind, name, inputs, job_id)
    conf = warehouse.spark.conf
    outer = conf.get(USER_METADATA, None)
    # Every Delta commit of this job carries its id: a concurrent job that loses a conflict names it.
    conf.set(USER_METADATA, run.job_id)
    try:
        # On an S3 root with s3.lock_table, the job and its record are written in this job's turn; it starts
        # when the turn comes.
        with root_lock(warehouse.config, run.job_id, kind):
            run.started_at, started = datetime.now(timezone.utc), time.perf_counter()
            try:
                yield run
            except BaseException as e:
                _record(warehouse, run, "FAILED", time.perf_counter() - started, f"{type(e).__name__}: {e}"[:2000],
                        rows)
                raise
            _record(warehouse, run, run.status, time.perf_counter() - started, None, rows)
    finally:
        if outer is None:
            conf.unset(USER_METADATA)
        else:
            conf.set(USER_METADATA, outer)


def _record(warehouse, run: JobRun, status: str, seconds: float, error: str | None, rows: list | None) -> None:
    row = (run.job_id, run.kind, run.name, status, run.started_at, datetime.now(timezone.utc), round(seconds, 3),
           json.dumps(run.inputs, default=str), {k: int(v) for k, v in run.counts.items()},
           json.dumps(run.metrics, default=str), error)
    if rows is not None:
        rows.append(row)
        return
    try:
        append_rows(warehouse, [row])
    except Exception as e:  # noqa: BLE001 - the job's own outcome matters more than its history row
        if error is None:
            raise
        log.warning("could not record the failed job %s in %s: %s", run.job_id, warehouse.jobs_path, e)


def append_rows(warehouse, rows: list) -> None:
    """Append job rows (as :func:`job_run` collects them) to ``_jobs`` in one commit."""
    if not rows:
        return
    frame = warehouse.spark.createDataFrame(rows, JOBS_SCHEMA).coalesce(1)
    for attempt in range(3):
        try:
            frame.write.format("delta").mode("append").save(warehouse.jobs_path)
            return
        except Exception as e:
            # Appends never conflict, but the first two jobs on a new root both create the table: one wins.
            if attempt == 2 or not is_conflict(e):
                raise


def job_history(warehouse, limit: int | None = 50):
    """The newest ``limit`` job runs (None: all), newest first, as a DataFrame (empty when no job has run)."""
    spark = warehouse.spark
    if not warehouse.exists(warehouse.jobs_path):
        return spark.createDataFrame([], JOBS_SCHEMA)
    history = spark.read.format("delta").load(warehouse.jobs_path).orderBy("started_at", ascending=False)
    return history if limit is None else history.limit(limit)


def format_history(history) -> str:
    """A job history DataFrame as a text table: start, kind, name, status, seconds, counts (and the cost of
    batch runs)."""
    rows = history.collect()
    if not rows:
        return "no jobs have run yet"
    lines = [f"{'started (UTC)':19}  {'kind':12} {'name':14} {'status':9} {'seconds':>8}  counts"]
    for r in rows:
        counts = ", ".join(f"{k} {v:,}" for k, v in sorted((r.counts or {}).items()))
        metrics = json.loads(r.metrics or "{}")
        if (cost := metrics.get("estimated_cost_usd")) is not None:  # batch runs: what the run cost
            counts += f"; cost ${cost:.4f}"
        if r.status == "SKIPPED":
            counts += metrics.get("skipped", "")
        lines.append(f"{r.started_at:%Y-%m-%d %H:%M:%S}  {r.kind:12} {(r.name or '-'):14} {r.status:9} "
                     f"{r.seconds:>8.1f}  {counts}" + (f"\n{'':21}error: {r.error}" if r.error else ""))
    return "\n".join(lines)
