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
from recsys_spark.datasets.csv_source import read_csv
from recsys_spark.datasets.validation import BAD, validate
from recsys_spark.datasets.warehouse import BULK, ID_FIELD, ORIGIN, Warehouse, table_version
from recsys_spark.errors import UserError
from recsys_spark.jobruns import job_run

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
    sample_rejects: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"import {self.dataset} ({self.mode}) from {self.source}: {self.read:,} rows read, "
                 f"{self.accepted:,} accepted, {self.rejected:,} rejected; {self.inserted:,} inserted, "
                 f"{self.updated:,} updated, {self.unchanged:,} unchanged; table version {self.version} "
                 f"(job {self.job_id})"]
        lines += [f"  rejected: {reason}  <- {line[:80]!r}" for line, reason in self.sample_rejects]
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
        # Users and items keep the last line per ID, so they need the rows' file order.
        rows = read_csv(spark, job.source, schema, job.allow_extra_columns, with_order=job.dataset in ID_FIELD)
        checked = validate(rows, schema)

        # Pass 1: keep the rejects (a log, even when the job then fails) and count them in the same scan.
        stats = Observation(f"import-{run.job_id}")
        writes.append_rejects(warehouse, job.dataset, checked.observe(stats, *writes.reject_counts()), run.job_id)
        read, rejected = stats.get["read"], stats.get["rejected"]
        result = ImportResult(run.job_id, job.dataset, job.mode, job.source, read, read - rejected, rejected)
        result.sample_rejects = _sample_rejects(warehouse, job.dataset, run.job_id) if rejected else []
        run.counts.update(read=read, accepted=result.accepted, rejected=rejected)
        if read == 0:
            raise UserError(f"source {job.source} has no data rows; nothing imported")
        writes.check_reject_ratio(warehouse, job.dataset, run.job_id, read, rejected, job.max_reject_ratio,
                                  what=f"rows of {job.source}", setting="max_reject_ratio",
                                  outcome="nothing was imported",
                                  examples=[why for _, why in result.sample_rejects[:3]])

        # Pass 2: the accepted rows, as one Delta commit. (`observe` also keeps Spark from pushing the filter
        # into the CSV parsing, where it would parse each line once per field.)
        written = Observation(f"accepted-{run.job_id}")
        accepted = checked.observe(written, F.count_if(~F.col(BAD)).alias("rows")).where(~F.col(BAD))
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


def _sample_rejects(warehouse: Warehouse, dataset: str, job_id: str, n: int = 5) -> list[tuple[str, str]]:
    rows = (warehouse.spark.read.format("delta").load(warehouse.rejects_path(dataset))
            .where(F.col("job_id") == job_id).select("line", "reason").limit(n).collect())
    return [(r.line or "", r.reason) for r in rows]
