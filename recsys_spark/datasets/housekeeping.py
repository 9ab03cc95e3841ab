"""Delta table housekeeping shared by `delete-users` and `maintain`: ID columns kept out of the file
statistics, compaction, VACUUM, and the purge that makes a deletion an erasure.

Delta writes each data file's min / max values into the table log (``add`` actions in the commit JSON, the
checkpoints and the ``.crc`` checksum files). For a USER_ID column those values are user IDs, so the tables
list the columns that get statistics (``delta.dataSkippingStatsColumns``) and leave the IDs out (item and
event IDs too: no table is clustered by an ID, so their statistics skip nothing and cost every write).

:func:`purge_history` removes what a table's history still keeps of deleted rows: the data files of older
versions (VACUUM with no retention, Delta's retention check lifted for that one call by
:func:`vacuum_settings`) and the log entries before the latest version (a fresh checkpoint, then the older
commit, checksum and checkpoint files are deleted). Delta's own log cleanup would not do that at once: it
runs only when a checkpoint is written and keeps every log file of the current day, whatever
``delta.logRetentionDuration`` says. After a purge the table cannot be time-travelled to the versions
before it.

>>> keep_ids_out_of_stats(spark, "/data/wh/interactions", ["TIMESTAMP", "EVENT_TYPE", "_ORIGIN"])  # doctest: +SKIP
>>> purge_history(spark, "/data/wh/interactions")                                   # doctest: +SKIP
{'files_removed': 14, 'log_files_removed': 22, 'bytes_freed': 1843204}
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from recsys_spark import storage

STATS_COLUMNS = "delta.dataSkippingStatsColumns"
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
VACUUM_LOGGING = "spark.databricks.delta.vacuum.logging.enabled"
LISTING_TASKS = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
DELTA_DEFAULT_RETENTION_HOURS = 168
# Every file in _delta_log named by a version: commits, checksums, checkpoints (classic, multi-part, v2),
# compacted commit ranges (named by their first and last version).
LOG_FILE = re.compile(r"^(\d{20})\.(?:(\d{20})\.compacted\.json|json|crc|checkpoint\..*)$")
# Identifiers, left out of the statistics: user IDs are personal data, and no table is clustered by an ID, so
# a file's min / max of IDs skips nothing while costing a string comparison per row and column on every
# write (a tenth of a big import's time for ITEM_ID and _EVENT_ID).
ID_COLUMNS = {"USER_ID", "ITEM_ID", "_EVENT_ID"}
REJECTS_STATS = ("job_id", "dataset", "rejected_at", "line_number")
STATS_TYPES = (T.NumericType, T.StringType, T.DateType, T.TimestampType, T.TimestampNTZType)


def stats_columns(schema: T.StructType, rejects: bool = False) -> list[str]:
    """The columns of a table that get file statistics: every column but the IDs of a type Delta keeps
    statistics for (numbers, strings, dates and times: naming a boolean one is an error); for a rejects
    table only its bookkeeping (its raw lines and reasons may hold any ID)."""
    kept = [f.name for f in schema.fields if isinstance(f.dataType, STATS_TYPES)]
    if rejects:
        return [c for c in REJECTS_STATS if c in kept]
    return [c for c in kept if c not in ID_COLUMNS]


def stats_property(columns: list[str]) -> str:
    return ",".join(f"`{c}`" for c in columns)


def keep_ids_out_of_stats(spark: SparkSession, path: str, columns: list[str]) -> bool:
    """Set the table's statistics columns to ``columns`` unless they already are; True when it changed. Only
    files written afterwards follow it (a deletion rewrites the files it touches)."""
    from delta.tables import DeltaTable

    wanted = stats_property(columns)
    properties = DeltaTable.forPath(spark, path).detail().select("properties").first()[0] or {}
    if properties.get(STATS_COLUMNS) == wanted:
        return False
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('{STATS_COLUMNS}' = '{wanted}')")
    return True


@contextmanager
def vacuum_settings(spark: SparkSession, hours: float):
    """Session settings for the VACUUM calls inside, then the session's own put back. Delta refuses a
    retention under its 7-day default unless its check is off (lifted only when ``hours`` needs it). And it
    lists the table's folders in as many tasks as ``parallelPartitionDiscovery.parallelism`` (10,000 by
    default): about a minute of empty tasks for a small table on two cores; the cluster's cores are enough
    tasks (each lists many folders). VACUUM is not logged as table commits (the ``_jobs`` row holds its
    counts), so a night with nothing new leaves every table at its version."""
    settings = {LISTING_TASKS: str(max(spark.sparkContext.defaultParallelism, 1)), VACUUM_LOGGING: "false"}
    if hours < DELTA_DEFAULT_RETENTION_HOURS:
        settings[RETENTION_CHECK] = "false"
    before = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def vacuum(spark: SparkSession, path: str, hours: float) -> dict[str, int]:
    """VACUUM with ``hours`` of retention; the files and bytes it freed. Not run when every file under the
    table is younger than the retention: VACUUM deletes only files older than it, so it would find nothing,
    and it costs a Spark job and a log replay (~1.5 s a table here; a young warehouse's whole night)."""
    from delta.tables import DeltaTable

    if storage.time_span(spark, path)[0] >= (time.time() - hours * 3600) * 1000:
        return {"files_removed": 0, "bytes_freed": 0}
    files, size = data_footprint(spark, path)
    with vacuum_settings(spark, hours):
        DeltaTable.forPath(spark, path).vacuum(float(hours))
    files_after, size_after = data_footprint(spark, path)
    return {"files_removed": files - files_after, "bytes_freed": size - size_after}


def data_footprint(spark: SparkSession, path: str) -> tuple[int, int]:
    """(files, bytes) of a table's data, its log left out (every commit, VACUUM's too, adds log files)."""
    files, size = storage.footprint(spark, path)
    log_files, log_size = storage.footprint(spark, f"{path.rstrip('/')}/_delta_log")
    return files - log_files, size - log_size


def optimize(spark: SparkSession, path: str) -> dict[str, int]:
    """Compact the table's small files (Delta's bin-packing OPTIMIZE; nothing is committed when there is
    nothing to compact). The replaced files stay until a VACUUM past the retention removes them."""
    from delta.tables import DeltaTable

    metrics = DeltaTable.forPath(spark, path).optimize().executeCompaction().select("metrics").first()[0]
    return {"files_compacted": int(metrics.numFilesRemoved), "files_written": int(metrics.numFilesAdded)}


def purge_history(spark: SparkSession, path: str) -> dict[str, int]:
    """Remove the table's old data files and log entries (see the module docstring); what it removed."""
    from delta.tables import DeltaTable

    files = data_footprint(spark, path)[0]
    size = storage.footprint(spark, path)[1]
    table = DeltaTable.forPath(spark, path)
    properties = table.detail().select("properties").first()[0] or {}
    if properties.get("delta.enableDeletionVectors") == "true":
        # Deleted rows then stay in their files, only masked; rewrite those files without them.
        spark.sql(f"REORG TABLE delta.`{path}` APPLY (PURGE)")
    with vacuum_settings(spark, 0):
        table.vacuum(0.0)
    vacuumed_files = data_footprint(spark, path)[0]
    version = table.history(1).select("version").first()[0]
    # No public API writes a checkpoint; the log's own does, at the version given.
    delta_log = spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
    delta_log.createCheckpointAtVersion(version)
    log_dir = f"{path.rstrip('/')}/_delta_log"
    if not any(LOG_FILE.match(n) and int(n[:20]) == version and ".checkpoint." in n
               for n in storage.list_names(spark, log_dir)):
        raise RuntimeError(f"no checkpoint was written at version {version} of {path}; its log was left whole")
    removed = 0
    for name in storage.list_names(spark, log_dir):
        match = LOG_FILE.match(name)
        last = int(match.group(2) or match.group(1)) if match else None
        if last is not None and last < version:
            storage.delete_path(spark, f"{log_dir}/{name}")
            removed += 1
    _, size_after = storage.footprint(spark, path)
    return {"files_removed": files - vacuumed_files, "log_files_removed": removed, "bytes_freed": size - size_after}
