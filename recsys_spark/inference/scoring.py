"""Scoring users with a model inside Spark tasks: histories in, top-k item IDs and scores out.

Scoring runs the batch job's frame (:mod:`recsys_spark.inference.frame`) without a filter: the model
broadcast once, the users' history entries and stored factors shuffled once by user, blocks of users
scored as one float32 matrix, excluded items at minus infinity, top-k selection. There is no per-user
Python loop and no users x items join.

>>> recs = recommend_users(model, history_entries(interactions, model), k=25)   # doctest: +SKIP
>>> recs.columns                                                                  # doctest: +SKIP
['USER_ID', 'ITEMS', 'SCORES', 'FALLBACK']
"""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.core.kernels.lines import OUTPUT_SCHEMA
from recsys_spark.core.kernels.scorer import KernelSettings, score_partition
from recsys_spark.core.models.base import Model
from recsys_spark.inference.frame import no_filter, score_frame, scoring_partitions, scoring_rows
from recsys_spark.recipes.fitting import id_index, to_spark


def item_index(spark, model: Model) -> DataFrame:
    """ITEM_ID -> ITEM_IDX of the model's catalog, small enough to broadcast."""
    return id_index(spark, model.item_ids, "ITEM_ID", "ITEM_IDX")


def history_entries(interactions: DataFrame, model: Model) -> DataFrame:
    """The interactions (USER_ID, ITEM_ID, TIMESTAMP, WEIGHT) on items of the model's catalog as the
    kernel's history rows: USER_ID, ITEM_IDX, WEIGHT, TIMESTAMP."""
    index = F.broadcast(item_index(interactions.sparkSession, model))
    return interactions.join(index, "ITEM_ID").select("USER_ID", "ITEM_IDX", "WEIGHT", "TIMESTAMP")


def stored_factors(spark, model: Model) -> DataFrame | None:
    """The model's trained user factors (USER_ID, FACTORS) as a DataFrame; None for recipes without them."""
    if model.users is None or isinstance(model.users, DataFrame):  # a DataFrame: kept on the executors
        return model.users
    return to_spark(spark, model.users)


def recommend_users(model: Model, entries: DataFrame, k: int, exclude_seen: bool = True,
                    users: DataFrame | None = None, factors: DataFrame | None = None, rows: int = 0) -> DataFrame:
    """Top ``k`` items per user: USER_ID, ITEMS (item IDs, best first), SCORES, FALLBACK (true when the user
    had no history and no stored factors, so popular items were given). ``entries``: history rows
    (:func:`history_entries`); ``users`` (USER_ID): score exactly these users (default: every user in
    ``entries``); ``factors``: stored user factors to use instead of folding in (:func:`stored_factors`)."""
    spark = entries.sparkSession
    requests = None
    if users is not None:
        requests = users.select("USER_ID").distinct().select(
            F.lit(0).cast("bigint").alias("LINE_ID"), F.col("USER_ID").alias("INPUT"), "USER_ID",
            F.lit(None).cast("string").alias("QUERY_ITEM"), F.lit(None).cast("array<string>").alias("ITEM_LIST"),
            F.lit(None).cast("string").alias("ERROR"), *no_filter())
    scored = score_frame(model, KernelSettings(k, exclude_seen), scoring_partitions(spark, rows),
                         requests=requests, entries=entries, factors=factors)
    return scored.select("USER_ID", "ITEMS", "SCORES", F.col("NOTE").isNotNull().alias("FALLBACK"))


def recommend_on_driver(model: Model, entries: DataFrame, users: DataFrame, k: int,
                        exclude_seen: bool = True) -> pa.Table:
    """:func:`recommend_users` for a few users, scored in this process (the rows collected once, no
    Python workers): USER_ID, ITEMS, SCORES as an Arrow table."""
    rows = scoring_rows(entries=entries, users=users).toArrow()
    scored = score_partition(model, rows, KernelSettings(k, exclude_seen), every_user=True)
    return pa.Table.from_batches(list(scored), OUTPUT_SCHEMA).select(["USER_ID", "ITEMS", "SCORES"])
