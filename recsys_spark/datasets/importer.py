"""Bulk import: CSV (a file or a folder, local or S3) -> validated rows -> one Delta transaction.

Two passes over the source: the first validates every line, appends the rejected ones (raw line, reason,
file, job id) to ``<root>/_rejects/<dataset>`` and counts; only if the reject ratio is within
``max_reject_ratio`` does the second write the accepted rows, as one Delta commit. A big source that looks
clean is first tried in one pass that writes as it validates and stops before its commit at the first line
that is no valid record (:func:`_one_pass`). Either way:

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
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import reduce

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config, ImportJob
from recsys_spark.core.kernels.csvrecords import SEGMENT
from recsys_spark.datasets import ledger, writes
from recsys_spark.datasets.conflicts import retry_on_conflict
from recsys_spark.datasets.csv_source import (BLOCK, CSV_SUFFIXES, ERROR, FILE, GROUP, INDEX, IS_RECORD, KIND, LINE,
                                              LINE_NUMBER, ORDER, POS, QUOTED, CsvSource, record_columns)
from recsys_spark.datasets.validation import BAD, convert, raw, validate
from recsys_spark.datasets.warehouse import BULK, ID_FIELD, ORIGIN, Warehouse, table_version
from recsys_spark.errors import UserError
from recsys_spark.jobruns import job_history, job_run
from recsys_spark.killpoints import kill_point
from recsys_spark.schema import DatasetSchema
from recsys_spark.storage import delete_path, list_files, stamp

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
    new_files: int | None = None  # only_new_files: the files not imported before (None: every file is read)
    sample_rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (line number, line, reason)

    def summary(self) -> str:
        files = "" if self.new_files is None else f"{self.new_files:,} new file(s), "
        lines = [f"import {self.dataset} ({self.mode}) from {self.source}: {files}{self.read:,} rows read, "
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
    if job.only_new_files and job.mode != "INCREMENTAL":
        raise UserError(f"import of {job.dataset} from {job.source}: only_new_files needs mode INCREMENTAL (a FULL "
                        "import replaces the data with its source's, so it reads every file)")
    with job_run(warehouse, "import", job.dataset, inputs) as run:
        warehouse.ensure_table(job.dataset)  # a schema mismatch fails before reading anything
        kill_point("import.started")
        files = None
        if job.only_new_files:
            # A folder of drops that holds none yet is a night without news, not an error.
            found = list_files(spark, job.source, CSV_SUFFIXES, allow_empty=True)
            listed = {path: stamp(spark, path) for path in found}
            files = ledger.new_files(warehouse, job.dataset, listed)
            run.counts.update(files_listed=len(listed), files_new=len(files))
            if not files:
                log.info("import %s: no new file in %s; nothing to do", job.dataset, job.source)
                return ImportResult(run.job_id, job.dataset, job.mode, job.source, 0, 0, 0, new_files=0,
                                    version=warehouse.version(job.dataset))
        source = CsvSource(spark, job.source, warehouse.schema(job.dataset), job.allow_extra_columns, files)
        taken = None if files is None else {path: listed[path] for path in files}
        result = ImportResult(run.job_id, job.dataset, job.mode, job.source, 0, 0, 0,
                              new_files=None if files is None else len(files))
        staging = warehouse.staging_path(run.job_id)
        try:
            big = sum(size for size, _ in source.stamps.values()) >= job.one_pass_min_mb * 1e6
            try_one = big and source.looks_plain and not _rejects_last_time(warehouse, job.dataset)
            written = _one_pass(warehouse, job, source, result, taken) if try_one else None
            one_pass = written is not None
            if not one_pass:
                written = _two_passes(warehouse, job, source, staging, result, taken, run)
            kill_point("import.committed")
        finally:
            delete_path(spark, staging)
        result.unchanged = result.accepted - result.inserted - result.updated
        run.counts.update(read=result.read, accepted=result.accepted, rejected=result.rejected)
        run.metrics["passes"] = 1 if one_pass else 2
        if written != result.accepted:  # the source changed during the second pass
            run.metrics["second_pass_rows"] = written
            log.warning("%s changed during the import: %d valid rows in the first pass, %d written; rerun it",
                        job.source, result.accepted, written)
        result.version = table_version(spark, warehouse.path(job.dataset))
        run.counts.update(inserted=result.inserted, updated=result.updated, unchanged=result.unchanged)
        run.metrics["version"] = result.version
    return result


# The message of the error that stops a single pass at a line it cannot take (see _one_pass).
_NOT_PLAIN = "recsys_spark: a line that is no valid record; importing in two passes"


def _one_pass(warehouse: Warehouse, job: ImportJob, source: CsvSource, result: ImportResult,
              taken: dict | None) -> int | None:
    """Import in a single pass a source whose every line is a valid record or a header line (most big
    machine-written files); None, with nothing committed, at the first line that is not (a reject, a quote, a
    blank line), for :func:`_two_passes`.

    The reject ratio cannot stop a commit after the data files are written (Delta decides nothing after them),
    so this pass admits no reject: such a line fails its task (``raise_error``), which fails the write before
    its commit. Its finished tasks' files stay in the table's folder, listed by no version, until VACUUM.
    """
    schema = warehouse.schema(job.dataset)
    checked = validate(source.plain(), schema, job.dataset)
    valid = F.col(IS_RECORD) & ~F.col(BAD)
    read = Observation(f"one-pass-{result.job_id}")
    rows = (checked.observe(read, F.count_if(valid).alias("rows"))
            .where(F.when(~valid & (F.col(LINE) != source.header()), F.raise_error(F.lit(_NOT_PLAIN)))
                   .otherwise(valid)))
    try:
        with _quiet_spark_log(warehouse.spark):
            _commit(warehouse, job, rows.select(*_kept(schema, job.dataset)), result, taken)
    except Exception as e:  # Spark wraps the task's error in its own, of several kinds
        if _NOT_PLAIN not in str(e):
            raise
        log.info("import %s: %s has a line that is no valid record; reading it in two passes", job.dataset,
                 job.source)
        return None
    result.read = result.accepted = read.get["rows"]
    return result.read


def _rejects_last_time(warehouse: Warehouse, dataset: str) -> bool:
    """Whether the dataset's last finished import found rejects: a feed that had some likely has more, and a
    stopped pass would cost up to a whole pass before the two (a feed that cleared up gets one pass again)."""
    last = (job_history(warehouse, None)
            .where((F.col("kind") == "import") & (F.col("name") == dataset) & F.col("counts")["read"].isNotNull())
            .select(F.col("counts")["rejected"].alias("rejected")).first())
    return bool(last and last.rejected)


@contextmanager
def _quiet_spark_log(spark: SparkSession):
    """Spark's log at FATAL inside: the one pass's expected stop would print its task's failure as errors,
    with stack traces, half a dozen times; any error of the write still reaches the caller as an exception."""
    root = spark.sparkContext._jvm.org.apache.logging.log4j.LogManager.getRootLogger()
    level = root.getLevel().toString()
    spark.sparkContext.setLogLevel("FATAL")
    try:
        yield
    finally:
        spark.sparkContext.setLogLevel(level)


def _two_passes(warehouse: Warehouse, job: ImportJob, source: CsvSource, staging: str, result: ImportResult,
                taken: dict | None, run) -> int:
    """Validate every line and keep the rejects (:func:`_first_pass`); when the reject ratio allows it, read
    the files again and write the accepted rows; returns how many were written."""
    reading = _first_pass(warehouse, job, source, staging, result.job_id)
    kill_point("import.rejects-kept")
    read, rejected = reading.read, reading.rejected
    result.read, result.accepted, result.rejected = read, read - rejected, rejected
    run.counts.update(read=read, accepted=result.accepted, rejected=rejected)
    result.sample_rejects = _sample_rejects(warehouse, job.dataset, result.job_id) if rejected else []
    run.metrics["files_with_quotes"] = len(reading.quoted)
    if read == 0 and taken is None:  # a new file without rows is recorded all the same
        raise UserError(f"source {job.source} has no data rows; nothing imported")
    writes.check_reject_ratio(warehouse, job.dataset, result.job_id, read, rejected, job.max_reject_ratio,
                              what=f"rows of {job.source}", setting="max_reject_ratio",
                              outcome="nothing was imported",
                              examples=[why for _, _, why in result.sample_rejects[:3]])
    if changed := source.changed():
        raise UserError(f"{', '.join(changed)} changed during the import; nothing was imported, run it again")
    # The files are read again, which costs less than keeping every row between the passes. (`observe` also
    # keeps Spark from pushing the filter into the parsing.)
    written = Observation(f"accepted-{result.job_id}")
    good = F.col(IS_RECORD) & ~F.col(BAD)
    accepted = _records(warehouse, job, source, reading, staging).observe(written, F.count_if(good).alias("rows"))
    _commit(warehouse, job, accepted.where(good), result, taken)
    return written.get["rows"]


def _commit(warehouse: Warehouse, job: ImportJob, accepted: DataFrame, result: ImportResult,
            taken: dict | None) -> None:
    """Write the accepted rows as one Delta commit; with ``taken`` (an only_new_files import's files: path ->
    size, modification time) their ledger rows first, which count exactly when this commit is made."""
    seq = None
    if taken is not None:  # a stopped one pass's rows are replaced by the two passes' (the same number)
        seq = ledger.record(warehouse, job.dataset, taken, result.job_id)
        kill_point("import.ledger-written")
    with ledger.committed_with(warehouse.spark, seq) if seq is not None else nullcontext():
        if job.mode == "FULL":
            _replace_bulk(warehouse, job.dataset, accepted, result)
        else:
            result.inserted, result.updated = writes.upsert(warehouse, job.dataset, accepted, BULK)


@dataclass
class _Reading:
    """What the first pass learnt: the files with quotes (read in segments), the records held by their
    segments' fragments (None when none), the records read and rejected, and the rejects among the files
    read plainly (their positions are in staging)."""

    quoted: set[str]
    stitched: DataFrame | None
    read: int
    rejected: int
    plain_rejected: int


def _kept(schema: DatasetSchema, dataset: str) -> list:
    """The columns of validated records that the commit needs: users and items keep the last line per ID, so
    their rows carry their file order."""
    order = [F.struct(FILE, BLOCK, POS).alias(ORDER)] if dataset in ID_FIELD else []
    return [*schema.names, IS_RECORD, BAD, *order]


def _records(warehouse: Warehouse, job: ImportJob, source: CsvSource, reading: _Reading, staging: str) -> DataFrame:
    """Every record again, typed, with ``_bad``, as validation gives them.

    Files without quotes are read exactly as in the first pass, so their lines get the same positions: the
    first pass's rejects are left out by position and the others are only typed, not checked again (the files
    are the same, :meth:`CsvSource.changed`). Files with quotes are read in segments and validated again.
    """
    schema, dataset = warehouse.schema(job.dataset), job.dataset
    keep = _kept(schema, dataset)
    # Read as in the first pass (same files, same splits), so every line has the same position.
    plain = source.plain(valid=True)
    if reading.quoted:
        plain = plain.where(~F.col(FILE).isin(list(reading.quoted)))
    if reading.plain_rejected:
        rejected = warehouse.spark.read.parquet(f"{staging}/plain").where(BAD).select(GROUP, POS)
        plain = plain.join(rejected, [GROUP, POS], "left_anti")
    records = convert(plain.select(*record_columns(schema)), schema).withColumn(BAD, F.lit(False)).select(*keep)
    if reading.quoted:
        segments = source.segments(reading.quoted)
        if reading.stitched is not None:
            segments = segments.unionByName(reading.stitched)
        segmented = validate(source.records(segments).select(*record_columns(schema)), schema, dataset)
        records = records.unionByName(segmented.select(*keep))
    return records


def _first_pass(warehouse: Warehouse, job: ImportJob, source: CsvSource, staging: str, job_id: str) -> _Reading:
    """Validate every record, keep the rejects (a log, even when the job then fails) with their line
    numbers, and count.

    Every file is read plainly first, noting the files with quotes; those are then read in segments. Each
    reading writes to staging what the driver needs, all of it small: the rejected records and, for the
    segments, their fragments and line counts. A reject's line number needs the line counts of the segments
    before its own: when there are rejects, the plain reading's are counted in one more scan.
    """
    spark, schema, dataset = warehouse.spark, warehouse.schema(job.dataset), job.dataset
    columns, record = record_columns(schema), F.col(IS_RECORD)
    bad = record & F.col(BAD)
    # Validated rows as they were read (the strings, not the typed values), to validate again later.
    as_read = [raw(f).alias(f.name) for f in schema.fields] + columns[len(schema.fields):]
    plain = validate(source.plain(), schema, dataset)
    seen = Observation(f"plain-{job_id}")
    # Every line passes the observation: only the few that need them carry their text and file along.
    narrow = plain.select(F.when(bad, F.col(LINE)).alias(LINE), F.when(bad, F.col(ERROR)).alias(ERROR),
                          F.when(bad | F.col(QUOTED), F.col(FILE)).alias(FILE), BLOCK, POS, GROUP, IS_RECORD, QUOTED,
                          BAD)
    # Counts only in the observation (a set of files there costs a quarter of the scan: such aggregates are
    # evaluated row by row); the lines with quotes are staged beside the rejects, to learn their files.
    (narrow.observe(seen, F.count_if(record).alias("read"), F.count_if(bad).alias("bad"),
                    F.count_if(F.col(QUOTED)).alias("quoted"))
     .where(bad | F.col(QUOTED)).write.parquet(f"{staging}/plain"))
    quoted = set() if not seen.get["quoted"] else \
        {r[FILE] for r in spark.read.parquet(f"{staging}/plain").where(QUOTED).select(FILE).distinct().collect()}
    read, rejected, segments, rejects = seen.get["read"], seen.get["bad"], [], []
    if quoted or rejected:
        # Line counts (and records, without the files with quotes) need no validation: a plain reading again,
        # filtered after the positions are given so that they are the first pass's.
        per_segment = source.plain().groupBy(FILE, BLOCK).agg(
            F.count(F.lit(1)).alias("lines"), F.min(POS).alias("first"), F.count_if(record).alias("read")
        ).where(~F.col(FILE).isin(list(quoted))).collect()
        staged = spark.read.parquet(f"{staging}/plain").where(F.col(BAD) & ~F.col(FILE).isin(list(quoted)))
        read, rejected = sum(r.read for r in per_segment), staged.count()
        segments = [(r[FILE], r[BLOCK], r.lines, r.first) for r in per_segment]
        rejects.append(source.split(staged).select(*columns))
    plain_rejected, stitched = rejected, None
    if quoted:
        checked = validate(source.records(source.segments(quoted)), schema, dataset)
        counted = Observation(f"segments-{job_id}")
        (checked.observe(counted, F.count_if(record).alias("read"), F.count_if(bad).alias("bad"))
         .where(~record | bad).select(*as_read, KIND, INDEX).write.parquet(f"{staging}/segments"))
        staged = spark.read.parquet(f"{staging}/segments")
        fragments = staged.where(~record).select(KIND, INDEX, LINE, FILE, BLOCK, GROUP).collect()
        read, rejected = read + counted.get["read"], rejected + counted.get["bad"]
        segments += [(r[FILE], r[BLOCK], r[INDEX], 0) for r in fragments if r[KIND] == SEGMENT]
        rejects.append(staged.where(record).select(*columns))
        stitched = source.stitch(fragments)
        if stitched is not None:
            found = validate(source.records(stitched), schema, dataset).agg(*writes.reject_counts()).first()
            read, rejected = read + found["read"], rejected + found["rejected"]
            rejects.append(source.records(stitched).select(*columns))
    if rejected:
        numbers = F.broadcast(source.segment_lines(segments))
        lines = reduce(DataFrame.unionByName, rejects).join(numbers, [FILE, BLOCK])
        lines = lines.withColumn(LINE_NUMBER, F.col("_first") + F.col(POS))
        writes.append_rejects(warehouse, dataset, validate(lines, schema, dataset), job_id)
    return _Reading(quoted, stitched, read, rejected, plain_rejected)


def _replace_bulk(warehouse: Warehouse, dataset: str, accepted: DataFrame, result: ImportResult) -> None:
    retry_on_conflict(warehouse, dataset, lambda: _replace_bulk_once(warehouse, dataset, accepted, result),
                      what=f"import {dataset}")


def _replace_bulk_once(warehouse: Warehouse, dataset: str, accepted: DataFrame, result: ImportResult) -> None:
    path, written = warehouse.path(dataset), Observation(f"full-{result.job_id}-{uuid.uuid4().hex[:6]}")  # per attempt
    bulk = F.count_if(F.col(ORIGIN) == BULK).alias("bulk")
    if dataset == "interactions":
        rows = writes.table_rows(warehouse, dataset, accepted, BULK).observe(written, bulk)
        rows.write.format("delta").mode("overwrite").option("replaceWhere", f"{ORIGIN} = '{BULK}'").save(path)
    else:  # users and items: one row per ID; ingested records for IDs the file does not have stay
        key = ID_FIELD[dataset]
        rows = writes.table_rows(warehouse, dataset, writes.latest_per_id(accepted, key), BULK)
        kept = warehouse.read(dataset, bookkeeping=True).where(F.col(ORIGIN) != BULK).join(rows, key, "left_anti")
        rows.unionByName(kept).observe(written, bulk).write.format("delta").mode("overwrite").save(path)
    result.inserted = written.get["bulk"]


def _sample_rejects(warehouse: Warehouse, dataset: str, job_id: str, n: int = 5) -> list[tuple[int, str, str]]:
    rows = (warehouse.spark.read.format("delta").load(warehouse.rejects_path(dataset))
            .where(F.col("job_id") == job_id).orderBy("source_file", "line_number")
            .select("line_number", "line", "reason").limit(n).collect())
    return [(r.line_number, r.line or "", r.reason) for r in rows]
