"""The Spark frame around the core scorer: partitions in, scored rows or JSON lines out.

Everything the scorer reads arrives as rows of one DataFrame shuffled once by user: request rows, one row
per history entry (USER_ID, ITEM_IDX, WEIGHT, TIMESTAMP) and one row per stored user factor vector. Each
task hands its partition to :func:`recsys_spark.core.kernels.scorer.score_partition` as one Arrow table
and yields its output batches (or :func:`recsys_spark.core.kernels.lines.json_lines` of them).

>>> score_frame(model, KernelSettings(25), 8, entries=history_entries(interactions, model)).columns  # doctest: +SKIP
['LINE_ID', 'INPUT', 'USER_ID', 'ITEMS', 'SCORES', 'ERROR', 'NOTE']
"""

from __future__ import annotations

from functools import reduce

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from recsys_spark.core.kernels.lines import LINES_SCHEMA, OUTPUT_SCHEMA, json_lines
from recsys_spark.core.kernels.scorer import ENTRY, FACTORS, REQUEST, REQUEST_COLUMNS, USER, KernelSettings, \
    score_partition
from recsys_spark.core.models.base import Model
from recsys_spark.partitioning import by_key


def scoring_partitions(spark, history_rows: int) -> int:
    """Scoring tasks: two per core (the kernel is the costly part; more tasks only add per-task cost), and
    enough that one task's partition, held in memory while grouped by user, stays near 2 million history
    rows."""
    return max(spark.sparkContext.defaultParallelism * 2, -(-history_rows // 2_000_000))


def no_filter() -> list:
    """The filter columns of requests without a filter."""
    return [F.lit(0).alias("BINDING_ID"), F.lit(None).cast("array<string>").alias("F_INCLUDE"),
            F.lit(None).cast("array<string>").alias("F_EXCLUDE"), F.lit(None).cast("array<int>").alias("F_APPLIES")]


def scoring_rows(*, requests: DataFrame | None = None, entries: DataFrame | None = None,
                 factors: DataFrame | None = None, users: DataFrame | None = None) -> DataFrame:
    """What the scorer reads, as one DataFrame of KIND-tagged rows (see :func:`score_frame`)."""
    parts = [] if requests is None else [requests.select(F.lit(REQUEST).alias("KIND"), *REQUEST_COLUMNS)]
    if entries is not None:
        parts.append(entries.select(F.lit(ENTRY).alias("KIND"), "USER_ID", F.col("ITEM_IDX").cast("int"),
                                    F.col("WEIGHT").cast("float"), F.col("TIMESTAMP").cast("long")))
    if factors is not None:
        parts.append(factors.select(F.lit(FACTORS).alias("KIND"), "USER_ID", F.col("FACTORS").cast("array<float>")))
    if users is not None and requests is None:
        parts.append(users.select(F.lit(USER).alias("KIND"), "USER_ID"))
    if not parts:
        raise ValueError("score_frame needs requests, entries or users")
    union = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
    for name, kind in (("LINE_ID", "bigint"), ("ITEM_IDX", "int"), ("FACTORS", "array<float>")):
        if name not in union.columns:
            union = union.withColumn(name, F.lit(None).cast(kind))
    # Empty arrays, not nulls, in the rows a column does not apply to: Spark's Arrow writer is several times
    # slower on null arrays (measured: 14 s against 3.6 s for 2 million history rows beside the factors).
    return union.select(*[F.coalesce(c, F.array().cast(t)).alias(c) if t.startswith("array") else c
                          for c, t in union.dtypes])


def score_frame(model: Model, settings: KernelSettings, partitions: int, *, requests: DataFrame | None = None,
                entries: DataFrame | None = None, factors: DataFrame | None = None, users: DataFrame | None = None,
                lines: bool = False, done=None) -> DataFrame:
    """Score requests with ``model`` in ``partitions`` tasks.

    ``requests``: REQUEST_COLUMNS rows, one output row each; None scores every user in ``entries`` and
    ``users`` (USER_ID), the batch job's ``all_users`` without a filter. ``entries``: history rows
    (USER_ID, ITEM_IDX into the model's catalog, WEIGHT, TIMESTAMP). ``factors``: stored user factors
    (USER_ID, FACTORS array<float>). Returns OUTPUT_SCHEMA rows, or with ``lines`` the service's JSON line
    per row (LINES_SCHEMA); ``done`` (an accumulator, optional) counts scored rows."""
    every_user = requests is None
    union = scoring_rows(requests=requests, entries=entries, factors=factors, users=users)
    # Related-items requests have no user: spread them by line.
    key = F.coalesce(F.col("USER_ID"), F.col("LINE_ID").cast("string"))
    shared = union.sparkSession.sparkContext.broadcast((model, settings))

    def score(batches):
        m, s = shared.value
        batches = list(batches)
        if not batches:
            return
        for out in score_partition(m, pa.Table.from_batches(batches), s, every_user):
            yield json_lines(out) if lines else out
            if done is not None:
                done.add(out.num_rows)

    return by_key(union, partitions, key).mapInArrow(score, from_arrow_schema(
        LINES_SCHEMA if lines else OUTPUT_SCHEMA))
