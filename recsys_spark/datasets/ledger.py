"""The files an ``only_new_files`` import has taken, committed with the rows they brought.

One ledger per dataset, ``<root>/_imported/<dataset>`` (Delta): each file's path, size, modification time,
the job that imported it, when, and ``seq``, the number of that import. An import first writes its files'
rows (``seq`` n, replacing any rows numbered n or above), then commits its rows to the dataset's table with
Delta's transaction id (app :data:`APP_ID`, version n) in the same commit as the data. A ledger row counts
only when its ``seq`` is at most the version the table has committed for that app: a run killed between the
two writes leaves rows that do not count (its files are read again next time), and a run killed before its
ledger write leaves nothing. The table and the ledger never disagree.

A file whose size or modification time differs from its ledger row (rewritten or appended to after its
import) counts as new: it is read again whole, and the INCREMENTAL upsert adds only what the table lacks
(interactions by key, users and items by ID, the newest record winning).

>>> listed = {"s3a://b/in/2026-11-30.csv": (1024, 1764547200000)}
>>> fresh = new_files(warehouse, "interactions", listed)                    # doctest: +SKIP
>>> seq = record(warehouse, "interactions", {p: listed[p] for p in fresh}, job_id)   # doctest: +SKIP
>>> with committed_with(spark, seq):                                        # doctest: +SKIP
...     upsert(warehouse, "interactions", rows, BULK)
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime, timezone

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

log = logging.getLogger(__name__)
APP_ID = "recsys_spark.imported-files"
SCHEMA = T.StructType([
    T.StructField("path", T.StringType(), False),
    T.StructField("size", T.LongType(), False),
    T.StructField("modified_ms", T.LongType(), False),
    T.StructField("job_id", T.StringType(), False),
    T.StructField("imported_at", T.TimestampType(), False),
    T.StructField("seq", T.LongType(), False),
])
_TXN = ("spark.databricks.delta.write.txnAppId", "spark.databricks.delta.write.txnVersion")


def committed_seq(spark: SparkSession, table: str) -> int:
    """The last import number the Delta table at ``table`` committed (0: none, or no table yet)."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, table):
        return 0
    # Delta's Python API does not expose a table's transaction ids; its snapshot (the JVM's) does.
    log_and_snapshot = spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTableWithSnapshot(spark._jsparkSession,
                                                                                           table)
    found = log_and_snapshot._2().transactions().get(APP_ID)
    return int(found.get()) if found.isDefined() else 0


def imported(warehouse, dataset: str) -> dict[str, tuple[int, int]]:
    """The files the dataset's committed imports took: path -> (size, modification time in ms)."""
    path = ledger_path(warehouse, dataset)
    if not warehouse.exists(path):
        return {}
    rows = (warehouse.spark.read.format("delta").load(path)
            .where(F.col("seq") <= committed_seq(warehouse.spark, warehouse.path(dataset)))
            .select("path", "size", "modified_ms").orderBy("seq").collect())
    return {r.path: (r.size, r.modified_ms) for r in rows}  # a file imported again: its newest row


def new_files(warehouse, dataset: str, listed: dict[str, tuple[int, int]]) -> list[str]:
    """The files of ``listed`` (path -> size, modification time) not imported yet, or changed since."""
    done = imported(warehouse, dataset)
    changed = [p for p in listed if p in done and done[p] != listed[p]]
    if changed:
        log.warning("%s: %d file(s) changed since their import, read again whole: %s", dataset, len(changed),
                    ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else ""))
    return [p for p in listed if done.get(p) != listed[p]]


def record(warehouse, dataset: str, files: dict[str, tuple[int, int]], job_id: str) -> int:
    """Write the ledger rows of ``files`` (not counted until :func:`committed_with` commits); returns their
    import number. Rows of an import killed before its data commit (numbered as high or higher) go."""
    seq = committed_seq(warehouse.spark, warehouse.path(dataset)) + 1
    now = datetime.now(timezone.utc)
    rows = [(path, size, modified, job_id, now, seq) for path, (size, modified) in sorted(files.items())]
    frame = warehouse.spark.createDataFrame(rows, SCHEMA)
    path = ledger_path(warehouse, dataset)
    writer = frame.write.format("delta").mode("overwrite")
    if warehouse.exists(path):
        writer = writer.option("replaceWhere", f"seq >= {seq}")
    writer.save(path)
    return seq


@contextmanager
def committed_with(spark: SparkSession, seq: int):
    """Delta writes in the body carry the transaction id (:data:`APP_ID`, ``seq``): the one data commit
    that makes the ledger rows numbered ``seq`` count. Delta skips a write whose id is not above the table's."""
    conf = spark.conf
    conf.set(_TXN[0], APP_ID)
    conf.set(_TXN[1], str(seq))
    try:
        yield
    finally:
        for key in _TXN:
            conf.unset(key)


def ledger_path(warehouse, dataset: str) -> str:
    return f"{warehouse.root}/_imported/{dataset}"
