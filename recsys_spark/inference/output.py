"""Batch output written once, in place, and switched to in one step by a small manifest written last.

An output folder holds::

    <output>/runs/<run id>/part-*.txt       the JSON lines of one run (Spark's part files)
    <output>/runs/<run id>/_metrics.json    that run's metrics
    <output>/_manifest.json                 which run is the output: its part files, line count, metrics
    <output>/_SUCCESS                       rewritten after each commit, for tools that wait on it

A run writes its lines straight into its own folder, which nothing points at yet, so no file is ever moved
or copied (on S3 a rename is a copy of every object). The commit is one small write: the manifest, which
names the new run's files, replaces the old one whole (a PUT on object stores, a rename over it on file
systems; :func:`recsys_spark.storage.replace_text`). Readers go through the manifest, so they see the
previous output, complete, until that instant, and the new one, complete, after it. The previous run's
folder is kept until the next commit, so a reader that opened the previous manifest can finish; older run
folders, and folders of runs that died before their commit, are deleted.

>>> write_run(spark, lines, "s3://bucket/out/weekly", "batch-20261129T142501-ab12cd")   # doctest: +SKIP
>>> commit_output(spark, "s3://bucket/out/weekly", "batch-20261129T142501-ab12cd", metrics)  # doctest: +SKIP
>>> output_files(spark, "s3://bucket/out/weekly")                                         # doctest: +SKIP
['s3://bucket/out/weekly/runs/batch-20261129T142501-ab12cd/part-00000-....txt', ...]
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from recsys_spark import storage
from recsys_spark.errors import UserError
from recsys_spark.killpoints import kill_point

log = logging.getLogger(__name__)
MANIFEST, METRICS, SUCCESS, RUNS = "_manifest.json", "_metrics.json", "_SUCCESS", "runs"
FORMAT = "recsys-spark batch output, version 1"


def run_folder(output: str, run_id: str) -> str:
    return f"{output.rstrip('/')}/{RUNS}/{run_id}"


def read_manifest(spark, output: str) -> dict | None:
    """The output's manifest, or None when no run has committed to it yet."""
    uri = f"{output.rstrip('/')}/{MANIFEST}"
    if not storage.path_exists(spark, uri):
        return None
    try:
        return json.loads(storage.read_text(spark, uri))
    except ValueError as e:
        raise UserError(f"{uri} is not a batch output manifest: {e}") from e


def output_files(spark, output: str) -> list[str]:
    """The part files of the output's current run, as full URIs (a clear error when nothing is committed)."""
    manifest = read_manifest(spark, output)
    if manifest is None:
        raise UserError(f"{output} has no committed batch output ({MANIFEST} is missing): run the batch job")
    return [f"{output.rstrip('/')}/{name}" for name in manifest["files"]]


def read_output(spark, output: str):
    """The current run's lines as a DataFrame with one string column ``value``."""
    files = output_files(spark, output)
    return spark.read.text(files) if files else spark.createDataFrame([], "value string")


def recover(spark, output: str) -> None:
    """Delete what runs that died before their commit left: run folders the manifest names neither as the
    current run nor as the previous one."""
    _delete_runs_except(spark, output, _kept(read_manifest(spark, output)))


def write_run(spark, lines, output: str, run_id: str) -> str:
    """Write the JSON lines (column ``value``) as part files into the run's own new folder; return it."""
    folder = run_folder(output, run_id)
    lines.write.mode("errorifexists").text(folder)
    return folder


def commit_output(spark, output: str, run_id: str, metrics: dict) -> dict:
    """Make the run written by :func:`write_run` the output: its ``_metrics.json``, then the manifest (the
    switch), then ``_SUCCESS``; then delete run folders older than the previous one. Returns the manifest."""
    output = output.rstrip("/")
    folder = run_folder(output, run_id)
    storage.write_text(spark, f"{folder}/{METRICS}", json.dumps(metrics, indent=2, default=str))
    kill_point("batch.staged")
    previous = read_manifest(spark, output)
    manifest = {
        "format": FORMAT, "run_id": run_id, "previous_run_id": previous["run_id"] if previous else None,
        "committed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "lines": metrics.get("users_in"), "metrics": f"{RUNS}/{run_id}/{METRICS}",
        "files": [f"{RUNS}/{run_id}/{name}" for name in storage.list_names(spark, folder)
                  if name.startswith("part-")],
    }
    storage.replace_text(spark, f"{output}/{MANIFEST}", json.dumps(manifest, indent=2))
    kill_point("batch.manifest-written")
    storage.replace_text(spark, f"{output}/{SUCCESS}", "")
    _delete_runs_except(spark, output, _kept(manifest))
    _delete_old_layout(spark, output)
    return manifest


def _kept(manifest: dict | None) -> set[str]:
    return {manifest["run_id"], manifest.get("previous_run_id")} - {None} if manifest else set()


def _delete_runs_except(spark, output: str, keep: set[str]) -> None:
    for name in storage.list_folders(spark, f"{output.rstrip('/')}/{RUNS}"):
        if name not in keep:
            log.info("removing %s/%s/%s (replaced, or left by a run that did not commit)", output, RUNS, name)
            storage.delete_path(spark, run_folder(output, name))


def _delete_old_layout(spark, output: str) -> None:
    """Part files and metrics that earlier releases wrote at the top of the output folder."""
    for name in storage.list_names(spark, output):
        if name.lstrip(".").startswith(("part-", METRICS)):
            storage.delete_path(spark, f"{output}/{name}")
