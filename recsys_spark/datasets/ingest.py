"""Incremental ingestion: the managed service's PutEvents / PutUsers / PutItems calls, as JSON-lines files.

Producers drop files into ``<landing>/events/``, ``<landing>/users/`` and ``<landing>/items/``. One line is
one record::

    events: {"userId": "u1", "sessionId": "s1", "eventType": "click", "sentAt": 1700000000, "itemId": "i9",
             "eventValue": 1.0, "eventId": "e-77", "properties": "{\\"device\\": \\"ios\\"}",
             "impression": ["i9", "i4"], "recommendationId": "r-1"}
    users:  {"userId": "u1", "properties": "{\\"gender\\": \\"F\\", \\"age\\": 31}"}
    items:  {"itemId": "i9", "properties": "{\\"genres\\": \\"comedy|drama\\", \\"price\\": 9.99}"}

``properties`` keys in camelCase map to the schema's UPPER_SNAKE fields (``numberOfRatings`` ->
``NUMBER_OF_RATINGS``). Each file is taken exactly once: a Structured Streaming file source with
``trigger(availableNow=True)`` and a checkpoint under ``<root>/_checkpoints/`` remembers what was read; every
batch is validated like an import (rejects kept), then merged idempotently (events deduplicated by
``eventId``, or by (USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE) without one; users and items upserted by ID), so a
batch replayed after a crash adds nothing twice. A run with no new files changes nothing.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.datasets import writes
from recsys_spark.datasets.csv_source import FILE, LINE, ORDER
from recsys_spark.datasets.validation import BAD, FORMAT_ERROR, validate
from recsys_spark.datasets.warehouse import EVENT_ID, ID_FIELD, STREAM, Warehouse
from recsys_spark.errors import UserError
from recsys_spark.jobruns import job_run
from recsys_spark.killpoints import kill_point
from recsys_spark.leases import lease
from recsys_spark.schema import DatasetSchema, camel_case
from recsys_spark.storage import path_exists, read_first_line, write_text

LANDING_FOLDER = {"interactions": "events", "users": "users", "items": "items"}
EVENT_JSON = ("userId STRING, sessionId STRING, eventType STRING, sentAt STRING, itemId STRING, "
              "eventValue STRING, eventId STRING, properties STRING, impression STRING, "
              "recommendationId STRING, _corrupt STRING")
RECORD_JSON = "userId STRING, itemId STRING, properties STRING, _corrupt STRING"
FILES_PER_BATCH = 1000
MAX_FILE_AGE = "36500d"


@dataclass
class IngestResult:
    """Totals per dataset over every batch of one run."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, dataset: str, **values: int) -> None:
        totals = self.counts.setdefault(dataset, {})
        for k, v in values.items():
            totals[k] = totals.get(k, 0) + int(v)

    def summary(self) -> str:
        if not any(c.get("read") for c in self.counts.values()):
            return "ingest: no new files"
        return "\n".join(f"ingest {d}: " + ", ".join(f"{v:,} {k}" for k, v in c.items())
                         for d, c in self.counts.items())


def run_ingest(spark: SparkSession, config: Config) -> IngestResult:
    """Take every file that arrived in the landing folders since the last run, exactly once."""
    warehouse = Warehouse(spark, config)
    result = IngestResult()
    # One ingestion at a time: its streaming checkpoints are not made for two writers.
    with job_run(warehouse, "ingest", None, {"landing": config.landing}) as run, lease(warehouse, "ingest",
                                                                                        run.job_id):
        for dataset, folder in LANDING_FOLDER.items():
            source = f"{config.landing.rstrip('/')}/{folder}"
            if config.schema(dataset) is None or not path_exists(spark, source):
                continue
            warehouse.ensure_table(dataset)
            _ingest_folder(warehouse, dataset, source, result)
            kill_point("ingest.dataset-done")
        run.counts.update({f"{d}_{k}": v for d, c in result.counts.items() for k, v in c.items()})
    return result


def _ingest_folder(warehouse: Warehouse, dataset: str, source: str, result: IngestResult) -> None:
    spark = warehouse.spark
    checkpoint = warehouse.checkpoint_path(f"ingest-{dataset}")
    app_id = _writer_id(spark, checkpoint)
    schema = warehouse.schema(dataset)
    max_ratio = warehouse.config.ingest.max_reject_ratio

    def process(batch: DataFrame, batch_id: int) -> None:
        # File order within the batch (later records win); a row id is only available on a batch.
        batch = batch.withColumn(ORDER, F.struct(FILE, "_block", F.monotonically_increasing_id()))
        checked = validate(_records(batch, dataset, schema), schema, dataset).persist()
        try:
            # Its own action, not observed during the rejects' append: a replayed batch's append is skipped
            # (its transaction id was seen) and would leave an observation empty.
            read, rejected = checked.agg(*writes.reject_counts()).first()
            if not read:
                return
            job_id = f"{app_id}:{batch_id}"
            if rejected:  # an empty append would still be a Delta commit
                writes.append_rejects(warehouse, dataset, checked, job_id, txn=(app_id, batch_id))
            kill_point("ingest.batch-rejects-kept")
            writes.check_reject_ratio(warehouse, dataset, job_id, read, rejected, max_ratio,
                                      what=f"records in new files under {source}", setting="ingest.max_reject_ratio",
                                      outcome="nothing was ingested from them")
            inserted, updated = writes.upsert(warehouse, dataset, checked.where(~F.col(BAD)), STREAM)
            kill_point("ingest.batch-merged")  # merged, but the checkpoint does not know yet: a replay
            result.add(dataset, read=read, accepted=read - rejected, rejected=rejected, inserted=inserted,
                       updated=updated)
        finally:
            checked.unpersist()

    # Every file taken stays known by name for good (Spark forgets names after 7 days by default, then
    # takes a file again whose modification time changed: `delete-users` rewrites landing files in place).
    lines = (spark.readStream.format("text").option("maxFilesPerTrigger", FILES_PER_BATCH)
             .option("maxFileAge", MAX_FILE_AGE).load(source)
             .select(F.col("value").alias(LINE), F.col("_metadata.file_path").alias(FILE),
                     F.col("_metadata.file_block_start").alias("_block"))
             .where(F.trim(F.col(LINE)) != ""))
    query = (lines.writeStream.foreachBatch(process).option("checkpointLocation", checkpoint)
             .trigger(availableNow=True).queryName(f"ingest-{dataset}").start())
    try:
        query.awaitTermination()
    except Exception as e:  # the batch's own error (e.g. the reject ratio) is the one to report
        cause = _user_error_in(e)
        if cause is not None:
            raise UserError(cause) from e
        raise


def _records(batch: DataFrame, dataset: str, schema: DatasetSchema) -> DataFrame:
    """JSON lines -> schema fields as strings plus ``_format_error`` (and ``_EVENT_ID`` for events)."""
    spec = EVENT_JSON if dataset == "interactions" else RECORD_JSON
    parsed = batch.withColumn("_j", F.from_json(F.col(LINE), spec, {"mode": "PERMISSIVE",
                                                                    "columnNameOfCorruptRecord": "_corrupt"}))
    props = F.from_json(F.col("_j.properties"), "MAP<STRING, STRING>")
    j = F.col("_j")
    if dataset == "interactions":
        fixed = {"USER_ID": F.coalesce(j.userId, j.sessionId), "ITEM_ID": j.itemId,
                 "TIMESTAMP": _epoch_seconds(j.sentAt), "EVENT_TYPE": j.eventType, "EVENT_VALUE": j.eventValue,
                 "IMPRESSION": _joined_list(j.impression), "RECOMMENDATION_ID": j.recommendationId}
        missing = F.when(j.eventType.isNull() | j.sentAt.isNull(), F.lit("eventType and sentAt are required"))
    else:
        id_field = ID_FIELD[dataset]
        fixed = {id_field: j.userId if dataset == "users" else j.itemId}
        missing = F.when(fixed[id_field].isNull(), F.lit(f"{'userId' if dataset == 'users' else 'itemId'} is "
                                                         "missing"))
    fields = []
    for f in schema.fields:
        value = fixed.get(f.name, F.coalesce(props.getItem(camel_case(f.name)), props.getItem(f.name)))
        fields.append(F.when(value != "", value).alias(f.name))
    bad_props = j.properties.isNotNull() & props.isNull()
    error = (F.when(j.isNull() | j._corrupt.isNotNull(), F.lit("malformed JSON line"))
             .when(bad_props, F.lit("properties is not a JSON object (a string holding one)"))
             .otherwise(missing))
    extra = [j.eventId.alias(EVENT_ID)] if dataset == "interactions" else []
    return parsed.select(*fields, *extra, LINE, FILE, ORDER, error.alias(FORMAT_ERROR))


def _epoch_seconds(sent_at: Column) -> Column:
    """sentAt as epoch seconds: a number (fractions dropped) or an ISO-8601 time; anything else is kept for
    validation to reject."""
    numeric = sent_at.rlike(r"^[0-9]+(\.[0-9]+)?$")
    iso = F.unix_timestamp(F.expr("try_to_timestamp(_j.sentAt)"))
    return (F.when(numeric, F.split(sent_at, r"\.").getItem(0))
            .when(iso.isNotNull(), iso.cast("string")).otherwise(sent_at))


def _joined_list(value: Column) -> Column:
    """A JSON list of item IDs as the service's ``a|b|c``; a plain string as it is."""
    as_list = F.from_json(value, "ARRAY<STRING>")
    return F.when(value.startswith("["), F.array_join(as_list, "|")).otherwise(value)


def _writer_id(spark: SparkSession, checkpoint: str) -> str:
    """A stable id for this checkpoint's writes (a new checkpoint gets a new one), for idempotent appends."""
    marker = f"{checkpoint}/_recsys_writer_id"
    if not path_exists(spark, marker):
        write_text(spark, marker, f"ingest-{uuid.uuid4().hex}")
    return read_first_line(spark, marker)


def _user_error_in(e: Exception) -> str | None:
    """The UserError message raised inside foreachBatch, as Spark wraps it in a StreamingQueryException."""
    match = re.search(r"recsys_spark\.errors\.UserError: (.+)", str(e))
    return match.group(1).strip() if match else None
