"""The one write path of CSV import and JSON-lines ingestion: rejects, the reject-ratio gate, the upsert.

Both jobs validate their rows (:func:`~recsys_spark.datasets.validation.validate`), then, in this order:

1. :func:`append_rejects` keeps the rejected rows, with their reasons, in ``<root>/_rejects/<dataset>``;
2. :func:`check_reject_ratio` fails the job when too many rows were rejected, before the table is touched
   (the rejects stay, to explain the failure);
3. :func:`upsert` merges the accepted rows in one Delta commit: users and items by ID (the newest record
   wins), interactions only when new (by eventId when the rows carry one, else by (USER_ID, ITEM_ID,
   TIMESTAMP, EVENT_TYPE)), so writing the same rows twice adds nothing.

A FULL import replaces the bulk rows instead of step 3 (see ``importer``), with :func:`table_rows` and
:func:`latest_per_id`.

>>> read, rejected = checked.agg(*reject_counts()).first()                          # doctest: +SKIP
>>> append_rejects(warehouse, "users", checked, job_id)                              # doctest: +SKIP
>>> check_reject_ratio(warehouse, "users", job_id, read, rejected, 0.01, what="rows of u.csv",
...                    setting="max_reject_ratio", outcome="nothing was imported")   # doctest: +SKIP
>>> upsert(warehouse, "users", checked.where(~F.col(BAD)), BULK)                     # doctest: +SKIP
(1, 1)
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.datasets.conflicts import retry_on_conflict
from recsys_spark.datasets.csv_source import FILE, LINE, LINE_NUMBER, ORDER
from recsys_spark.datasets.validation import BAD, reason
from recsys_spark.datasets.warehouse import EVENT_ID, ID_FIELD, ORIGIN, REJECTS_SCHEMA, Warehouse, interaction_key
from recsys_spark.errors import UserError


def reject_counts() -> tuple[Column, Column]:
    """The aggregates ``read`` (rows) and ``rejected`` (rows flagged ``_bad``) of validated rows, for
    ``DataFrame.agg`` or ``DataFrame.observe``.

    >>> checked.agg(*reject_counts()).first()                                  # doctest: +SKIP
    Row(read=3, rejected=1)
    """
    return F.count(F.lit(1)).alias("read"), F.count_if(F.col(BAD)).alias("rejected")


def append_rejects(warehouse: Warehouse, dataset: str, checked: DataFrame, job_id: str,
                   txn: tuple[str, int] | None = None) -> None:
    """Append the rejected rows of ``checked`` (validated rows with ``_line`` and ``_file``) to
    ``<root>/_rejects/<dataset>``: job id, dataset, source file, the raw line, the reason, the time, and the
    line number in the file when ``checked`` has ``_line_number``.

    ``txn`` (app id, version) makes a retried append a no-op: a replayed ingest batch does not keep its rejects
    twice.

    >>> append_rejects(warehouse, "interactions", checked, "ingest-3f2a:7", txn=("ingest-3f2a", 7))  # doctest: +SKIP
    """
    number = F.col(LINE_NUMBER) if LINE_NUMBER in checked.columns else F.lit(None)
    rejects = checked.where(F.col(BAD)).select(
        F.lit(job_id).alias("job_id"), F.lit(dataset).alias("dataset"), F.col(FILE).alias("source_file"),
        F.col(LINE).alias("line"), reason(warehouse.schema(dataset), dataset).alias("reason"),
        F.current_timestamp().alias("rejected_at"), number.cast("long").alias("line_number"))
    # mergeSchema: a rejects table created before line_number existed gets the column.
    writer = rejects.select(*REJECTS_SCHEMA.names).write.format("delta").mode("append").option("mergeSchema", True)
    if txn is not None:
        writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
    writer.save(warehouse.ensure_rejects(dataset))


def check_reject_ratio(warehouse: Warehouse, dataset: str, job_id: str, read: int, rejected: int, limit: float, *,
                       what: str, setting: str, outcome: str, examples: Sequence[str] = ()) -> None:
    """Raise a UserError when more than ``limit`` of the ``read`` rows (``read`` > 0) were rejected.

    The message names the counts, the ratio, the limit (as the ``setting`` that holds it), what was not done
    (``outcome``) and where the rejects of ``job_id`` are, with a few ``examples`` of reasons when given.

    >>> check_reject_ratio(warehouse, "interactions", "7c1e", read=2, rejected=1, limit=0.01,
    ...                    what="rows of bad.csv", setting="max_reject_ratio",
    ...                    outcome="nothing was imported")                      # doctest: +SKIP
    Traceback (most recent call last):
    recsys_spark.errors.UserError: 1 of 2 rows of bad.csv were rejected (50.0%), above max_reject_ratio 1.0%; ...
    """
    if rejected / read <= limit:
        return
    message = (f"{rejected:,} of {read:,} {what} were rejected ({rejected / read:.1%}), above {setting} "
               f"{limit:.1%}; {outcome}. Reasons are in {warehouse.rejects_path(dataset)} (job_id {job_id})")
    raise UserError(message + (", e.g.: " + "; ".join(examples) if examples else "."))


def upsert(warehouse: Warehouse, dataset: str, accepted: DataFrame, origin: str) -> tuple[int, int]:
    """Merge ``accepted`` rows into the dataset's table in one commit; returns (inserted, updated).

    Users and items: one row per ID, the last in ``_order`` (the newest record), inserted or replacing the
    stored one. Interactions: inserted only when not stored yet, by ``_EVENT_ID`` for rows that carry one (the
    rows have that column when their source has event ids: ingestion), otherwise by (USER_ID, ITEM_ID,
    TIMESTAMP, EVENT_TYPE). ``origin`` (``bulk`` or ``stream``) is stored in ``_ORIGIN``.

    >>> upsert(warehouse, "users", accepted, STREAM)                           # doctest: +SKIP
    (1, 1)
    """
    from delta.tables import DeltaTable

    if dataset == "interactions":
        rows, condition = _new_interactions(warehouse, accepted, origin)
    else:
        key = ID_FIELD[dataset]
        rows = table_rows(warehouse, dataset, latest_per_id(accepted, key), origin)
        condition = f"t.`{key}` = s.`{key}`"

    def merge():  # against the table as it is now: a retry after a concurrent commit sees that commit
        target = DeltaTable.forPath(warehouse.spark, warehouse.path(dataset)).alias("t")
        merging = target.merge(rows.alias("s"), condition).whenNotMatchedInsertAll()
        if dataset != "interactions":
            merging = merging.whenMatchedUpdateAll()
        return merging.execute().first()

    metrics = retry_on_conflict(warehouse, dataset, merge, what=f"writing {dataset}")
    return metrics.num_inserted_rows, metrics.num_updated_rows


def _new_interactions(warehouse: Warehouse, accepted: DataFrame, origin: str) -> tuple[DataFrame, str]:
    """The interactions to insert, each once, and the merge condition that finds one already stored."""
    key = interaction_key(warehouse.schema("interactions"))
    same_key = " AND ".join(f"t.`{c}` <=> s.`{c}`" for c in key)
    if EVENT_ID not in accepted.columns:
        # An equality-only condition lets Delta join the source to the table by hash; the OR below cannot.
        return table_rows(warehouse, "interactions", accepted.dropDuplicates(key), origin), same_key
    with_id = accepted.where(F.col(EVENT_ID).isNotNull()).dropDuplicates([EVENT_ID])
    without_id = accepted.where(F.col(EVENT_ID).isNull()).dropDuplicates(key)
    rows = table_rows(warehouse, "interactions", with_id.unionByName(without_id), origin)
    same_event = f"s.{EVENT_ID} IS NOT NULL AND t.{EVENT_ID} = s.{EVENT_ID}"
    return rows, f"({same_event}) OR (s.{EVENT_ID} IS NULL AND {same_key})"


def table_rows(warehouse: Warehouse, dataset: str, rows: DataFrame, origin: str) -> DataFrame:
    """Rows in the table's column order: schema fields, then ``_ORIGIN`` and, for interactions, ``_EVENT_ID``
    (the rows' own when they have that column, else null).

    >>> table_rows(warehouse, "users", accepted, BULK).columns                # doctest: +SKIP
    ['USER_ID', 'GENDER', 'AGE', '_ORIGIN']
    """
    columns = [F.col(f"`{n}`") for n in warehouse.schema(dataset).names] + [F.lit(origin).alias(ORIGIN)]
    if dataset == "interactions":
        columns.append(F.col(EVENT_ID) if EVENT_ID in rows.columns else F.lit(None).cast("string").alias(EVENT_ID))
    return rows.select(*columns)


def latest_per_id(rows: DataFrame, id_field: str) -> DataFrame:
    """One row per ID: the last in ``_order`` (file order), as the managed service keeps the newest record.

    >>> latest_per_id(accepted, "USER_ID").count()                            # doctest: +SKIP
    3
    """
    newest = Window.partitionBy(id_field).orderBy(F.col(ORDER).desc())
    return rows.withColumn("_rank", F.row_number().over(newest)).where("_rank = 1").drop("_rank")
