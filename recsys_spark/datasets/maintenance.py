"""`maintain`: what keeps a warehouse that runs every night small and fast, with the settings of
``maintain`` in the config (docs/configuration.md). In order:

1. the history purges of deletions whose ``erasure.purge_after_hours`` has passed (see :mod:`.deletion`);
2. rejected lines older than ``rejects_retention_days`` deleted;
3. each Delta table (datasets, rejects, then ``_jobs``): ID columns kept out of its statistics, its small
   files compacted (OPTIMIZE), and files replaced more than ``vacuum_retention_hours`` ago deleted (VACUUM);
4. solution versions beyond the newest ``keep_versions`` deleted (never the newest, nor one a campaign or
   batch job pins), and version folders without a manifest older than ``incomplete_version_hours``;
5. batch outputs older than ``batch_output_retention_days``;
6. scratch left by killed runs (``_staging/``, training checkpoints) older than ``scratch_retention_hours``.

Each action is one row in ``_jobs`` (kind ``maintain``, named by what it did and where) with its counts:
files before and after, files removed, bytes freed; the rows are appended together when the run ends
(one commit instead of one per action). An action that fails is recorded as FAILED and the
others still run; the job then fails naming it.

>>> print(run_maintain(spark, config).summary())          # doctest: +SKIP
maintain: 9 actions; 412 files -> 97 files, 38.2 MB freed
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark import storage
from recsys_spark.config import Config
from recsys_spark.core.store import MANIFEST
from recsys_spark.datasets import housekeeping
from recsys_spark.datasets.deletion import purge_tables
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.jobruns import JobRun, append_rows, job_run, new_job_id
from recsys_spark.killpoints import kill_point
from recsys_spark.solutions.store import version_store
from recsys_spark.writerlock import root_lock

log = logging.getLogger(__name__)
DATASETS = ("interactions", "users", "items")


@dataclass
class MaintainResult:
    """What one run did: each action's counts, and the warehouse root's files and bytes before and after."""

    actions: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    before: tuple[int, int] = (0, 0)
    after: tuple[int, int] = (0, 0)

    @property
    def bytes_freed(self) -> int:
        return sum(c.get("bytes_freed", 0) for _, c in self.actions)

    def summary(self) -> str:
        lines = [(f"maintain: {len(self.actions)} actions; {self.before[0]:,} files ({_mb(self.before[1])}) -> "
                  f"{self.after[0]:,} files ({_mb(self.after[1])}) under the root, {_mb(self.bytes_freed)} freed")]
        for name, counts in self.actions:
            lines.append(f"  {name}: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items()))
        return "\n".join(lines + [f"  FAILED {f}" for f in self.failed])


def run_maintain(spark: SparkSession, config: Config) -> MaintainResult:
    """Run every maintenance action of the config's warehouse (see the module docstring)."""
    warehouse = Warehouse(spark, config)
    result = MaintainResult(before=storage.footprint(spark, warehouse.root))
    rows = []  # the actions' _jobs rows, written in one commit at the end

    def act(name: str, work: Callable[[JobRun], None]) -> None:
        try:
            with job_run(warehouse, "maintain", name, {"root": warehouse.root}, rows=rows) as run:
                work(run)
        except Exception as e:  # noqa: BLE001 - recorded as FAILED; the other actions still run
            log.error("maintain %s failed: %s", name, e)
            result.failed.append(f"{name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            return
        result.actions.append((name, dict(run.counts)))

    try:
        _act_all(spark, config, warehouse, act)
    finally:
        with root_lock(config, new_job_id("maintain"), "maintain"):
            append_rows(warehouse, rows)
    result.after = storage.footprint(spark, warehouse.root)
    if result.failed:
        raise RuntimeError(f"maintain: {len(result.failed)} action(s) failed (see `recsys-spark jobs`): "
                           + "; ".join(result.failed))
    return result


def _act_all(spark: SparkSession, config: Config, warehouse: Warehouse, act) -> None:
    """Every action, in order, through ``act(name, work)``."""
    settings = config.maintain
    for job_id, tables in _due_purges(warehouse):
        def purge(run: JobRun, tables=tables, job_id=job_id) -> None:
            run.metrics["deletion_job"] = job_id
            purge_tables(spark, tables, run)
        act(f"purge {job_id}", purge)
    if settings.rejects_retention_days is not None:
        cutoff = datetime.now(timezone.utc) - timedelta(days=settings.rejects_retention_days)
        for dataset in DATASETS:
            path = warehouse.rejects_path(dataset)
            if warehouse.exists(path):
                act(f"rejects-retention {dataset}", lambda run, path=path: _expire_rejects(spark, path, cutoff, run))
    tables = [(warehouse.path(d), False) for d in DATASETS if config.schema(d) and warehouse.exists(warehouse.path(d))]
    tables += [(warehouse.rejects_path(d), True) for d in DATASETS if warehouse.exists(warehouse.rejects_path(d))]
    for path, rejects in tables:
        act(f"table {path[len(warehouse.root) + 1:]}",
            lambda run, path=path, rejects=rejects: _tidy_table(spark, path, rejects, settings, run))
    for solution in storage.list_folders(spark, f"{warehouse.root}/solutions"):
        act(f"versions {solution}", lambda run, s=solution: _prune_versions(spark, config, s, run))
    if settings.batch_output_retention_days is not None:
        act("batch-outputs", lambda run: _expire_outputs(spark, config, run))
    act("scratch", lambda run: _clear_scratch(spark, warehouse, settings.scratch_retention_hours, run))
    if warehouse.exists(warehouse.jobs_path):  # last: the rows of earlier jobs are in it
        act("table _jobs", lambda run: _tidy_table(spark, warehouse.jobs_path, None, settings, run))


def _due_purges(warehouse: Warehouse) -> list[tuple[str, list[str]]]:
    """(deletion job id, its tables) for every deletion whose delayed purge is due and not done yet."""
    if not warehouse.exists(warehouse.jobs_path):
        return []
    jobs = warehouse.spark.read.format("delta").load(warehouse.jobs_path).where("status = 'SUCCEEDED'")
    deletions = jobs.where("kind = 'delete-users' AND metrics LIKE '%purge_due%'").select("job_id", "metrics")
    done = {r.name for r in jobs.where("kind = 'maintain' AND name LIKE 'purge %'").select("name").collect()}
    now = datetime.now(timezone.utc)
    due = []
    for row in deletions.orderBy("started_at").collect():
        metrics = json.loads(row.metrics)
        if f"purge {row.job_id}" not in done and datetime.fromisoformat(metrics["purge_due"]) <= now:
            due.append((row.job_id, metrics["purge_tables"]))
    return due


def _expire_rejects(spark: SparkSession, path: str, cutoff: datetime, run: JobRun) -> None:
    from delta.tables import DeltaTable

    table = DeltaTable.forPath(spark, path)
    old = spark.read.format("delta").load(path).where(F.col("rejected_at") < cutoff).limit(1).count()
    if old:  # a DELETE that matches nothing still commits
        table.delete(F.col("rejected_at") < cutoff)
        metrics = table.history(1).select("operationMetrics").first()[0] or {}
        run.counts["rows_deleted"] = int(metrics.get("numDeletedRows", 0))
    else:
        run.counts["rows_deleted"] = 0


def _tidy_table(spark: SparkSession, path: str, rejects: bool | None, settings, run: JobRun) -> None:
    """Statistics columns (dataset and rejects tables), OPTIMIZE, VACUUM; data files and bytes counted."""
    run.counts["files_before"] = housekeeping.data_footprint(spark, path)[0]
    if rejects is not None:
        schema = spark.read.format("delta").load(path).schema
        housekeeping.keep_ids_out_of_stats(spark, path, housekeeping.stats_columns(schema, rejects=rejects))
    if settings.optimize:
        run.counts.update(housekeeping.optimize(spark, path))
        kill_point("maintain.table-compacted")
    run.counts.update(housekeeping.vacuum(spark, path, settings.vacuum_retention_hours))
    run.counts["files_after"] = housekeeping.data_footprint(spark, path)[0]
    run.metrics["bytes_after"] = storage.footprint(spark, path)[1]


def _prune_versions(spark: SparkSession, config: Config, solution: str, run: JobRun) -> None:
    """Delete versions beyond the newest ``keep_versions`` (pins and the newest kept) and old incomplete
    version folders."""
    settings = config.maintain
    store = version_store(spark, config)
    versions = store.list(solution)
    pinned = {p.version for p in [*config.campaigns, *config.batch_jobs]
              if p.solution == solution and p.version != "latest"}
    keep = {v.version for v in versions[-settings.keep_versions:]} | pinned
    base = store.solution_path(solution)
    complete = {v.version for v in versions}
    stale_ms = (time.time() - settings.incomplete_version_hours * 3600) * 1000
    removed = incomplete = freed = 0
    for name in storage.list_folders(spark, base):
        path = f"{base}/{name}"
        if name in complete and name in keep:
            continue
        if name not in complete:
            if storage.path_exists(spark, f"{path}/{MANIFEST}") or storage.newest_ms(spark, path) > stale_ms:
                continue  # written meanwhile, or a training may still be writing it
            incomplete += 1
        else:
            removed += 1
        freed += storage.footprint(spark, path)[1]
        # The manifest first: a version without one is not listed, so a kill in the folder's deletion
        # leaves an incomplete folder (removed by a later run), never a listed version missing tables.
        storage.delete_path(spark, f"{path}/{MANIFEST}")
        storage.delete_path(spark, path)
        kill_point("maintain.version-removed")
    run.counts.update({"versions_kept": len(complete) - removed, "versions_removed": removed,
                       "incomplete_removed": incomplete, "bytes_freed": freed})
    run.metrics["pinned"] = sorted(pinned)


def _expire_outputs(spark: SparkSession, config: Config, run: JobRun) -> None:
    cutoff_ms = (time.time() - config.maintain.batch_output_retention_days * 86400) * 1000
    removed = freed = 0
    for job in config.batch_jobs:
        marker = f"{job.output.rstrip('/')}/_SUCCESS"
        if storage.path_exists(spark, marker) and storage.newest_ms(spark, marker) < cutoff_ms:
            freed += storage.footprint(spark, job.output)[1]
            storage.delete_path(spark, job.output)
            removed += 1
    run.counts.update({"outputs_removed": removed, "bytes_freed": freed})


def _clear_scratch(spark: SparkSession, warehouse: Warehouse, hours: float, run: JobRun) -> None:
    """Import staging folders and training checkpoint folders whose newest file is older than ``hours``."""
    stale_ms = (time.time() - hours * 3600) * 1000
    places = [f"{warehouse.root}/_staging/{n}" for n in storage.list_folders(spark, f"{warehouse.root}/_staging")]
    checkpoints = f"{warehouse.root}/_checkpoints"
    for name in storage.list_folders(spark, checkpoints):
        if name.startswith("train-"):
            places += [f"{checkpoints}/{name}/{n}" for n in storage.list_folders(spark, f"{checkpoints}/{name}")]
    removed = freed = 0
    for path in places:
        if storage.newest_ms(spark, path) < stale_ms:
            freed += storage.footprint(spark, path)[1]
            storage.delete_path(spark, path)
            removed += 1
    run.counts.update({"folders_removed": removed, "bytes_freed": freed})


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"
