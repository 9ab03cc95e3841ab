"""Writing batch output so that a finished output is always whole.

The lines are written to a staging folder beside the output (``<output>.staging-<run>``), with
``_metrics.json``. Only when that is complete does the commit start: the previous output is moved aside,
the staging folder moved into place, ``_SUCCESS`` written last, and the previous output deleted. A run
that dies before the commit leaves the previous output (with its ``_SUCCESS``) untouched; the next run
deletes the stale staging folder, and restores a previous output that a run died while moving (also
when it died after moving the new one in but before ``_SUCCESS``). Between its two moves a commit leaves no
complete output (no ``_SUCCESS``) until the next run of the job.

>>> commit_output(spark, lines, "s3a://bucket/out/weekly", "batch-20261129-ab12", metrics)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging

from pyspark.sql import DataFrame

from recsys_spark import storage
from recsys_spark.killpoints import kill_point

log = logging.getLogger(__name__)
SUCCESS, METRICS = "_SUCCESS", "_metrics.json"


def recover(spark, output: str) -> None:
    """Undo what an interrupted run left: stale staging folders, an output moved aside but not replaced."""
    output = output.rstrip("/")
    name = output.rsplit("/", 1)[-1]
    for stale in storage.siblings(spark, output, f"{name}.staging-"):
        log.warning("removing %s, left by an interrupted run", stale)
        storage.delete_path(spark, stale)
    previous = storage.siblings(spark, output, f"{name}.previous-")
    if previous and storage.path_exists(spark, output) and not storage.path_exists(spark, f"{output}/{SUCCESS}"):
        # Killed between moving the new output in and writing _SUCCESS: the commit never finished (on S3 the
        # move is a copy and may be partial), so the previous output comes back.
        log.warning("removing %s, an output whose commit was interrupted", output)
        storage.delete_path(spark, output)
    if previous and not storage.path_exists(spark, output):
        log.warning("restoring %s, moved aside by an interrupted run", previous[-1])
        storage.rename(spark, previous[-1], output)
    for leftover in storage.siblings(spark, output, f"{name}.previous-"):
        storage.delete_path(spark, leftover)


def write_staging(spark, lines: DataFrame, output: str, run_id: str) -> str:
    """Write the JSON lines (column ``value``) as part files into a fresh staging folder; return it."""
    staging = f"{output.rstrip('/')}.staging-{run_id}"
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    # The staging folder is not the output: its own _SUCCESS would be moved with the part files.
    before = conf.get("mapreduce.fileoutputcommitter.marksuccessfuljobs")
    conf.set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
    try:
        lines.write.mode("errorifexists").text(staging)
    finally:
        conf.set("mapreduce.fileoutputcommitter.marksuccessfuljobs", before or "true")
    return staging


def commit_output(spark, staging: str, output: str, run_id: str, metrics: dict) -> None:
    """Add ``_metrics.json`` to the staging folder, swap it in for the output, then write ``_SUCCESS``."""
    output = output.rstrip("/")
    storage.write_text(spark, f"{staging}/{METRICS}", json.dumps(metrics, indent=2, default=str))
    kill_point("batch.staged")
    previous = f"{output}.previous-{run_id}"
    had_output = storage.path_exists(spark, output)
    if had_output:
        storage.rename(spark, output, previous)
        kill_point("batch.output-moved-aside")
    storage.rename(spark, staging, output)
    kill_point("batch.output-moved-in")
    storage.write_text(spark, f"{output}/{SUCCESS}", "")
    if had_output:
        storage.delete_path(spark, previous)
