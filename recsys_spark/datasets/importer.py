"""Bulk import: CSV (a file or a folder, local or S3) -> validated rows -> one Delta transaction.

Two passes over the source: the first validates every line, appends the rejected ones (raw line, reason,
file, job id) to ``<root>/_rejects/<dataset>`` and counts; only if the reject ratio is within
``max_reject_ratio`` does the second write the accepted rows, as one Delta commit:

* FULL replaces the dataset's bulk data (rows ingested by `ingest` stay, as with the managed service);
  users and items keep one row per ID (the file's later line wins).
* INCREMENTAL upserts: users and items by ID (the newest record wins), interactions inserted only when
  their (USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE) is not there yet, so importing a file twice adds nothing.

A run killed before its commit leaves the table at its previous version; every run is recorded in ``_jobs``.
The rejects, the ratio check and the INCREMENTAL upsert are ingestion's too (:mod:`.writes`).

>>> results = run_imports(spark, config)                          # doctest: +SKIP
>>> results[0].accepted, results[0].rejected                      # doctest: +SKIP
(143270, 4)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config, ImportJob
from recsys_spark.datasets import writes
from recsys_spark.datasets.csv_source import BLOCK, FILE, GROUPED, INDEX, LINE_NUMBER, CsvSource, is_record
from recsys_spark.datasets.validation import BAD, validate
from recsys_spark.datasets.warehouse import BULK, ID_FIELD, ORIGIN, Warehouse, table_version
from recsys_spark.errors import UserError
from recsys_spark.jobruns import job_run
from recsys_spark.storage import delete_path

log = logging.getLogger(__name__)

@dataclass
class ImportResult:
    """What one import did: counts, the Delta version it wrote, and a sample of rejects."""

    job_id: str
    dataset: str
    mode: str
    source: str
    read: int
    accepted: int
    rejected: int
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0  # accepted rows already present (INCREMENTAL) or superseded by a later line
    version: int | None = None
    sample_rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (line number, line, reason)

    def summary(self) -> str:
        lines = [f"import {self.dataset} ({self.mode}) from {self.source}: {self.read:,} rows read, "
                 f"{self.accepted:,} accepted, {self.rejected:,} rejected; {self.inserted:,} inserted, "
                 f"{self.updated:,} updated, {self.unchanged:,} unchanged; table version {self.version} "
                 f"(job {self.job_id})"]
        lines += [f"  rejected line {number}: {reason}  <- {line[:80]!r}"
                  for number, line, reason in self.sample_rejects]
        return "\n".join(lines)


def run_imports(spark: SparkSession, config: Config, dataset: str | None = None, source: str | None = None,
                mode: str | None = None) -> list[ImportResult]:
    """Run the config's imports (only ``dataset``'s when given), or one import of ``source`` into ``dataset``."""
    if source is not None:
        if dataset is None:
            raise UserError("--source needs --dataset: which dataset does the file hold?")
        jobs = [ImportJob(dataset=dataset, source=source, mode=mode or "FULL")]
    else:
        jobs = [j for j in config.imports if dataset in (None, j.dataset)]
        if mode is not None:
            jobs = [j.model_copy(update={"mode": mode}) for j in jobs]
        if not jobs:
            raise UserError(f"{config.source}: no imports" + (f" for dataset {dataset!r}" if dataset else "")
                            + " under `imports`")
    warehouse = Warehouse(spark, config)
    return [import_csv(warehouse, job) for job in jobs]


def import_csv(warehouse: Warehouse, job: ImportJob) -> ImportResult:
    spark = warehouse.spark
    inputs = {"dataset": job.dataset, "source": job.source, "mode": job.mode}
    with job_run(warehouse, "import", job.dataset, inputs) as run:
        schema = warehouse.schema(job.dataset)
        warehouse.ensure_table(job.dataset)  # a schema mismatch fails before reading anything
        source = CsvSource(spark, job.source, schema, job.allow_extra_columns)
        rows = source.read()
        staging = warehouse.staging_path(run.job_id)
        try:
            stitched, counts = _first_pass(warehouse, job, source, rows, staging, run.job_id)
        finally:
            delete_path(spark, staging)
        read, rejected = counts
        result = ImportResult(run.job_id, job.dataset, job.mode, job.source, read, read - rejected, rejected)
        result.sample_rejects = _sample_rejects(warehouse, job.dataset, run.job_id) if rejected else []
        run.counts.update(read=read, accepted=result.accepted, rejected=rejected)
        if read == 0:
            raise UserError(f"source {job.source} has no data rows; nothing imported")
        writes.check_reject_ratio(warehouse, job.dataset, run.job_id, read, rejected, job.max_reject_ratio,
                                  what=f"rows of {job.source}", setting="max_reject_ratio",
                                  outcome="nothing was imported",
                                  examples=[f"line {n}: {why}" for n, _, why in result.sample_rejects[:3]])

        # Pass 2: the accepted rows, as one Delta commit; the files are read again (a second reading is cheaper
        # than keeping every row between the passes). `observe` also keeps Spark from pushing the filter into
        # the parsing.
        everything = rows if stitched is None else rows.unionByName(stitched)
        checked = validate(source.fields(everything, with_order=job.dataset in ID_FIELD), schema, job.dataset)
        written = Observation(f"accepted-{run.job_id}")
        accepted = (checked.observe(written, F.count_if(is_record() & ~F.col(BAD)).alias("rows"))
                    .where(is_record() & ~F.col(BAD)))
        if job.mode == "FULL":
            _replace_bulk(warehouse, job.dataset, accepted, result)
        else:
            result.inserted, result.updated = writes.upsert(warehouse, job.dataset, accepted, BULK)
            result.unchanged = result.accepted - result.inserted - result.updated
        if written.get["rows"] != result.accepted:  # the source changed between the two passes
            run.metrics["second_pass_rows"] = written.get["rows"]
            log.warning("%s changed during the import: %d valid rows in the first pass, %d written; rerun it",
                        job.source, result.accepted, written.get["rows"])
        result.version = table_version(spark, warehouse.path(job.dataset))
        run.counts.update(inserted=result.inserted, updated=result.updated, unchanged=result.unchanged)
        run.metrics["version"] = result.version
    return result


def _first_pass(warehouse: Warehouse, job: ImportJob, source: CsvSource, rows: DataFrame, staging: str,
                job_id: str) -> tuple[DataFrame | None, tuple[int, int]]:
    """Validate every record, keep the rejects (a log, even when the job then fails) with their line
    numbers, and count; returns the records the segments' fragments hold (None when there are none), and
    (records read, rejected).

    One scan writes to staging what the driver needs, all of it small: the rejected records, the fragments
    and the segments' line counts (line numbers are known only once every segment has been counted).
    """
    spark, schema = warehouse.spark, warehouse.schema(job.dataset)
    stats = Observation(f"import-{job_id}")
    checked = validate(source.fields(rows), schema, job.dataset)
    counts = F.count_if(is_record()).alias("read"), F.count_if(is_record() & F.col(BAD)).alias("bad")
    checked.observe(stats, *counts).where(~is_record() | F.col(BAD)).select(*GROUPED.names).write.parquet(staging)
    staged = spark.read.parquet(staging)
    fragments = staged.where(~is_record()).collect()
    read, rejected = stats.get["read"], stats.get["bad"]
    stitched, bad = source.stitch(fragments), staged.where(is_record())
    if stitched is not None:
        found = validate(source.fields(stitched), schema, job.dataset).agg(*writes.reject_counts()).first()
        read, rejected, bad = read + found["read"], rejected + found["rejected"], bad.unionByName(stitched)
    if rejected:
        numbers = F.broadcast(source.line_numbers(fragments))
        rejects = (validate(source.fields(bad), schema, job.dataset).join(numbers, [FILE, BLOCK])
                   .withColumn(LINE_NUMBER, F.col("_first") + F.col(INDEX)))
        writes.append_rejects(warehouse, job.dataset, rejects, job_id)
    return stitched, (read, rejected)


def _replace_bulk(warehouse: Warehouse, dataset: str, accepted: DataFrame, result: ImportResult) -> None:
    path = warehouse.path(dataset)
    if dataset == "interactions":
        rows = writes.table_rows(warehouse, dataset, accepted, BULK)
        rows.write.format("delta").mode("overwrite").option("replaceWhere", f"{ORIGIN} = '{BULK}'").save(path)
        result.inserted = result.accepted
        return
    # Users and items: one row per ID; ingested records for IDs the file does not have stay.
    key = ID_FIELD[dataset]
    rows = writes.table_rows(warehouse, dataset, writes.latest_per_id(accepted, key), BULK)
    kept = warehouse.read(dataset, bookkeeping=True).where(F.col(ORIGIN) != BULK).join(rows, key, "left_anti")
    written = Observation(f"full-{result.job_id}")
    (rows.unionByName(kept).observe(written, F.count_if(F.col(ORIGIN) == BULK).alias("bulk"))
     .write.format("delta").mode("overwrite").save(path))
    result.inserted = written.get["bulk"]
    result.unchanged = result.accepted - result.inserted


def _sample_rejects(warehouse: Warehouse, dataset: str, job_id: str, n: int = 5) -> list[tuple[int, str, str]]:
    rows = (warehouse.spark.read.format("delta").load(warehouse.rejects_path(dataset))
            .where(F.col("job_id") == job_id).orderBy("source_file", "line_number")
            .select("line_number", "line", "reason").limit(n).collect())
    return [(r.line_number, r.line or "", r.reason) for r in rows]
