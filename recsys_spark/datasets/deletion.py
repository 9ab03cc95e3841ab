"""The managed service's data deletion job, as an erasure: the listed users leave every place under the
warehouse root that keeps them.

The input is a CSV (a file or a folder) with a ``USER_ID`` column. In order:

1. **Dataset tables** (interactions, users): one Delta MERGE per table deletes the users' rows. The tables
   keep USER_ID out of their file statistics first (:mod:`.housekeeping`), so the files the MERGE writes
   carry no ID in the log.
2. **Rejects** (``_rejects/interactions``, ``_rejects/users``): a rejected line belongs to a user when it
   is a JSON record whose owner field names them (``userId``, or ``sessionId`` for an event without one),
   or, for a line that is not (a CSV line, broken JSON), when one of its tokens (the text between commas,
   quotes, braces, brackets, ``;``, ``|`` and white space) is their ID. Matching by token may take a
   rejected line of another user that happens to hold the ID elsewhere: rejects are diagnostics, an erasure
   must not miss.
3. **Landing files** (``<landing>/events/``, ``<landing>/users/``, taken or not yet taken by `ingest`, gzip
   and the other Hadoop codecs too): each file holding a listed user's line is rewritten without those
   lines, under its own name (`ingest` recognises a file by its name: a rewritten file it already took is
   not taken again). The ingest checkpoint itself holds file names only, no records.
4. **Solution versions**: every table of every version (complete or not) with a USER_ID column (the
   user factors) is rewritten without the users' rows.
5. **Batch files**: each batch job's input file and output holding a listed user; under the root they are
   rewritten without the users' lines (an output line belongs to its ``input.userId``), outside it they are
   named in the job record, or rewritten with ``erasure.outside_batch_files: erase``.
6. **History**: the tables' older versions and log entries still hold the deleted rows and the old files'
   statistics: they are purged at once (:func:`~.housekeeping.purge_history`), or, with
   ``erasure.purge_after_hours``, by the first `maintain` after that delay.

The job record (``_jobs``) counts what was erased, and its metrics name every place (``erased``), what was
left and why (``not_erased``), and when the history was or will be purged (``purged_at`` / ``purge_due``).

A file is rewritten next to itself (``.erasing-<job>-<name>``) and then put in its place; a run killed in
between leaves that copy, which the next run puts in place or removes. The deletion list itself is not
touched: keep it outside the root. Files a running `serve` is still writing (hidden ``.serve-*`` files)
are not read; they are published within ``serve.publish_seconds`` and a deletion after that finds them.

>>> delete_users(spark, config, "s3://bucket/deletions/2026-11.csv")     # doctest: +SKIP
{'users_listed': 2, 'interactions_deleted': 57, 'users_deleted': 2, 'rejects_deleted': 1, ...}
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import storage
from recsys_spark.config import ALL_USERS, Config
from recsys_spark.datasets import housekeeping
from recsys_spark.datasets.conflicts import retry_on_conflict
from recsys_spark.datasets.csv_source import CSV_SUFFIXES
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.errors import UserError
from recsys_spark.jobruns import JobRun, job_run
from recsys_spark.killpoints import kill_point

DATASETS_WITH_USERS = ("interactions", "users")
# Where a JSON line names its user: the first of these paths that is set.
OWNER_PATHS = {"interactions": (("userId",), ("sessionId",)), "users": (("userId",),),
               "batch_input": (("userId",),), "batch_output": (("input", "userId"),)}
LANDING = {"interactions": "events", "users": "users"}
TOKEN_SPLIT = r"[\s,;|\"'{}\[\]\\]+"
ERASING = ".erasing-"


def delete_users(spark: SparkSession, config: Config, source: str) -> dict[str, int]:
    """Erase the users listed in ``source`` (see the module docstring); return the job record's counts."""
    warehouse = Warehouse(spark, config)
    with job_run(warehouse, "delete-users", None, {"source": source}) as run:
        ids = _listed(spark, source)
        listed = {r.USER_ID for r in ids.collect()}
        run.counts["users_listed"] = len(listed)
        run.metrics.update({"erased": {}, "not_erased": {}})
        owner = _Owners(listed)
        tables = _erase_tables(warehouse, ids, owner, run)
        _erase_landing(warehouse, ids, owner, run)
        _erase_versions(warehouse, ids, run)
        _erase_batch_files(warehouse, ids, owner, run)
        delay = config.erasure.purge_after_hours
        if delay == 0:
            purge_tables(spark, tables, run)
            run.metrics["purged_at"] = _now()
        else:
            run.metrics["purge_due"] = (datetime.now(timezone.utc) + timedelta(hours=delay)).isoformat(
                timespec="seconds")
            run.metrics["purge_tables"] = tables
        ids.unpersist()
        kill_point("delete-users.done")
        return dict(run.counts)


def purge_tables(spark: SparkSession, tables: Iterable[str], run: JobRun) -> None:
    """Purge each table's history (older files, older log entries); counts added to ``run``."""
    for path in tables:
        for key, value in housekeeping.purge_history(spark, path).items():
            _add(run, f"purged_{key}", value)


def _listed(spark: SparkSession, source: str) -> DataFrame:
    files = storage.list_files(spark, source, CSV_SUFFIXES)
    listed = spark.read.csv(files, header=True)
    if "USER_ID" not in listed.columns:
        raise UserError(f"{source}: the deletion list needs a USER_ID column; its header has "
                        f"{', '.join(listed.columns) or 'no columns'}")
    return (listed.select(F.trim("USER_ID").alias("USER_ID")).where("USER_ID IS NOT NULL AND USER_ID != ''")
            .distinct().cache())


def _erase_tables(warehouse: Warehouse, ids: DataFrame, owner: _Owners, run: JobRun) -> list[str]:
    """Delete the users' rows from the dataset tables and the rejects; return the tables touched."""
    from delta.tables import DeltaTable

    spark, touched = warehouse.spark, []
    for dataset in DATASETS_WITH_USERS:
        path = warehouse.path(dataset)
        if warehouse.config.schema(dataset) is None or not warehouse.exists(path):
            continue
        schema = spark.read.format("delta").load(path).schema
        housekeeping.keep_ids_out_of_stats(spark, path, housekeeping.stats_columns(schema))
        metrics = retry_on_conflict(
            warehouse, dataset, lambda path=path: DeltaTable.forPath(spark, path).alias("t")
            .merge(ids.alias("s"), "t.USER_ID = s.USER_ID").whenMatchedDelete().execute().first(),
            what=f"delete-users in {dataset}")
        run.counts[f"{dataset}_deleted"] = metrics.num_deleted_rows
        kill_point("delete-users.dataset-done")
        run.metrics["erased"][path] = f"{metrics.num_deleted_rows} rows"
        touched.append(path)
    for dataset in DATASETS_WITH_USERS:
        path = warehouse.rejects_path(dataset)
        if not warehouse.exists(path):
            continue
        rejects = spark.read.format("delta").load(path)
        housekeeping.keep_ids_out_of_stats(spark, path, housekeeping.stats_columns(rejects.schema, rejects=True))
        theirs = owner.matching(rejects.select("job_id", "line"), "line", dataset, ids).distinct()
        metrics = (DeltaTable.forPath(spark, path).alias("t")
                   .merge(theirs.alias("s"), "t.job_id = s.job_id AND t.line <=> s.line")
                   .whenMatchedDelete().execute().first())
        _add(run, "rejects_deleted", metrics.num_deleted_rows)
        run.metrics["erased"][path] = f"{metrics.num_deleted_rows} rejected lines"
        touched.append(path)
    return touched


def _erase_landing(warehouse: Warehouse, ids: DataFrame, owner: _Owners, run: JobRun) -> None:
    for dataset, folder in LANDING.items():
        path = f"{warehouse.config.landing.rstrip('/')}/{folder}"
        if storage.path_exists(warehouse.spark, path):
            _erase_text(warehouse.spark, path, dataset, ids, owner, run, "landing")


def _erase_versions(warehouse: Warehouse, ids: DataFrame, run: JobRun) -> None:
    """Rewrite every version table with a USER_ID column that holds a listed user."""
    spark = warehouse.spark
    base = f"{warehouse.root}/solutions"
    for solution in storage.list_folders(spark, base):
        for version in storage.list_folders(spark, f"{base}/{solution}"):
            folder = f"{base}/{solution}/{version}"
            _finish_rewrites(spark, folder)
            for table in storage.list_folders(spark, folder):
                if table.startswith((".", "_")):
                    continue
                path = f"{folder}/{table}"
                if not any(n.endswith(".parquet") for n in storage.list_names(spark, path)):
                    continue  # not a Parquet table yet (a training still writing it)
                rows = spark.read.parquet(path)
                if "USER_ID" not in rows.columns:
                    continue
                theirs = rows.join(ids, "USER_ID", "left_semi").count()
                if not theirs:
                    continue
                staged = f"{folder}/{ERASING}{table}"
                rows.join(ids, "USER_ID", "left_anti").coalesce(1).write.mode("overwrite").parquet(staged)
                _replace(spark, staged, path)
                _add(run, "version_rows_deleted", theirs)
                _add(run, "version_tables_rewritten", 1)
                run.metrics["erased"][path] = f"{theirs} rows"


def _erase_batch_files(warehouse: Warehouse, ids: DataFrame, owner: _Owners, run: JobRun) -> None:
    """Batch inputs and outputs holding a listed user: rewritten under the root (or everywhere with
    ``erasure.outside_batch_files: erase``), named in the record otherwise."""
    spark, config = warehouse.spark, warehouse.config
    seen = set()
    for job in config.batch_jobs:
        places = [(job.output, "batch_output")] + ([] if job.input == ALL_USERS else [(job.input, "batch_input")])
        for path, kind in places:
            path = path.rstrip("/")
            if path in seen or not storage.path_exists(spark, path):
                continue
            seen.add(path)
            inside = path.startswith(warehouse.root + "/")
            if inside or config.erasure.outside_batch_files == "erase":
                _erase_text(spark, path, kind, ids, owner, run, "batch")
            elif _holding_files(spark, path, kind, ids, owner):
                run.metrics["not_erased"][path] = ("outside the warehouse root; holds listed users (set "
                                                   "erasure.outside_batch_files: erase to rewrite it)")
                _add(run, "outside_files_holding_users", 1)


# ---------------------------------------------------------------------------------------------- lines


class _Owners:
    """Who a line belongs to, the same way in Spark (to find the files) and in Python (to rewrite them)."""

    def __init__(self, listed: set[str]):
        self.listed = listed
        # IDs that tokenizing would cut apart are looked for as substrings instead (rare).
        self.odd = sorted(i for i in listed if re.search(TOKEN_SPLIT, i))

    def column(self, line: Column, kind: str) -> Column:
        """An array of the line's candidate owners: its owner field when it is JSON that has one, else its
        tokens (and any odd listed ID it contains)."""
        field = F.coalesce(*[F.get_json_object(line, "$." + ".".join(p)) for p in OWNER_PATHS[kind]])
        tokens = F.split(line, TOKEN_SPLIT)
        if self.odd:
            tokens = F.concat(tokens, F.array(*[F.when(F.instr(line, i) > 0, F.lit(i)) for i in self.odd]))
        return F.when(field.isNotNull(), F.array(field)).otherwise(tokens)

    def matching(self, frame: DataFrame, line: str, kind: str, ids: DataFrame) -> DataFrame:
        """The rows of ``frame`` whose ``line`` belongs to a listed user."""
        owners = frame.withColumn("_owner", F.explode(self.column(F.col(line), kind)))
        return (owners.join(F.broadcast(ids.withColumnRenamed("USER_ID", "_owner")), "_owner", "left_semi")
                .drop("_owner"))

    def owns(self, line: str, kind: str) -> bool:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        for path in OWNER_PATHS[kind] if isinstance(record, dict) else ():
            value = record
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                return (value if isinstance(value, str) else json.dumps(value)) in self.listed
        if any(t in self.listed for t in re.split(TOKEN_SPLIT, line)):
            return True
        return any(i in line for i in self.odd)


def _erase_text(spark: SparkSession, path: str, kind: str, ids: DataFrame, owner: _Owners, run: JobRun,
                counter: str) -> None:
    """Rewrite each text file under ``path`` (a file, or a folder at any depth: a batch output keeps its
    lines in ``runs/<run id>/``; names starting with ``_`` or ``.`` are not data) that holds a listed user's
    line, after finishing rewrites an earlier killed run left; counted as ``<counter>_files_rewritten`` and
    ``<counter>_lines_deleted``."""
    _finish_rewrites(spark, path.rsplit("/", 1)[0] if storage.is_file(spark, path) else path)
    files = _holding_files(spark, path, kind, ids, owner)
    dropped = sum(_rewrite(spark, uri, lambda text: not owner.owns(text, kind)) for uri in files)
    _add(run, f"{counter}_files_rewritten", len(files))
    _add(run, f"{counter}_lines_deleted", dropped)
    if files:
        run.metrics["erased"][path] = f"{dropped} lines in {len(files)} files"


def _holding_files(spark: SparkSession, path: str, kind: str, ids: DataFrame, owner: _Owners) -> list[str]:
    lines = (spark.read.option("recursiveFileLookup", "true").text(path)
             .select(F.col("value"), F.col("_metadata.file_path").alias("file")))
    return sorted(r.file for r in owner.matching(lines, "value", kind, ids).select("file").distinct().collect())


def _rewrite(spark: SparkSession, uri: str, keep: Callable[[str], bool]) -> int:
    """Rewrite a text file with only the lines ``keep`` accepts (same name, same compression); the number of
    lines dropped."""
    data = storage.read_bytes(spark, uri)
    lines = data.splitlines(keepends=True)
    kept = [b for b in lines if keep(b.decode("utf-8", "replace").rstrip("\r\n"))]
    if len(kept) == len(lines):
        return 0
    folder, name = uri.rsplit("/", 1)
    staged = f"{folder}/{ERASING}{name}"
    storage.delete_path(spark, staged)
    storage.write_bytes(spark, staged, b"".join(kept))
    _replace(spark, staged, uri)
    return len(lines) - len(kept)


def _replace(spark: SparkSession, staged: str, target: str) -> None:
    storage.delete_path(spark, target)
    storage.rename(spark, staged, target)


def _finish_rewrites(spark: SparkSession, folder: str) -> None:
    """A run killed between deleting a file and moving its rewritten copy in left only the copy: move it in;
    a copy whose original is still there was not finished: remove it. In ``folder`` and the folders under it."""
    folder = folder.rstrip("/")
    for staged in storage.siblings(spark, f"{folder}/x", ERASING):
        name = staged.rsplit("/", 1)[1][len(ERASING):]
        target = f"{folder}/{name}"
        if storage.path_exists(spark, target):
            storage.delete_path(spark, staged)
        else:
            storage.rename(spark, staged, target)
    for name in storage.list_folders(spark, folder):
        if not name.startswith(ERASING):
            _finish_rewrites(spark, f"{folder}/{name}")


def _add(run: JobRun, key: str, value: int) -> None:
    run.counts[key] = run.counts.get(key, 0) + int(value)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
