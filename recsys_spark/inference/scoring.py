"""Scoring users with a model inside Spark tasks: histories in, top-k item IDs and scores out.

Scoring runs the batch job's kernel (:mod:`recsys_spark.inference.kernel`) without a filter: the model
broadcast once, blocks of users scored as one float32 matrix, excluded items at minus infinity, top-k
selection. There is no per-user Python loop and no users x items join.

Input columns (:func:`user_histories` builds them from interactions): ``USER_ID``; ``H_ITEMS`` (array of
item indexes into the model's catalog), ``H_WEIGHTS`` (array of event weights), ``H_TIMES`` (array of epoch
seconds), null or empty for users without history; optional ``FACTORS`` (array of floats, stored user
factors) and ``KNOWN`` (whether to use them instead of solving from the history).

>>> recs = recommend_users(model, user_histories(interactions, model), k=25)   # doctest: +SKIP
>>> recs.columns
['USER_ID', 'ITEMS', 'SCORES', 'FALLBACK']
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.inference.kernel import KernelSettings, no_filter, score_frame
from recsys_spark.recipes.base import Model, id_index, to_spark


def item_index(spark, model: Model) -> DataFrame:
    """ITEM_ID -> ITEM_IDX of the model's catalog, small enough to broadcast."""
    return id_index(spark, model.item_ids, "ITEM_ID", "ITEM_IDX")


def user_histories(interactions: DataFrame, model: Model, users: DataFrame | None = None) -> DataFrame:
    """Per user, the interactions (USER_ID, ITEM_ID, TIMESTAMP, WEIGHT) on items of the model's catalog as
    H_ITEMS / H_WEIGHTS / H_TIMES arrays (in no particular order). ``users`` (USER_ID): score exactly these users
    (those without history get empty arrays); default: every user in ``interactions``."""
    index = F.broadcast(item_index(interactions.sparkSession, model))
    entries = interactions.join(index, "ITEM_ID").select(
        "USER_ID", F.struct("TIMESTAMP", "ITEM_IDX", F.col("WEIGHT").cast("float").alias("WEIGHT")).alias("E"))
    grouped = entries.groupBy("USER_ID").agg(F.collect_list("E").alias("H"))
    if users is not None:
        grouped = users.select("USER_ID").distinct().join(grouped, "USER_ID", "left")
    h = F.coalesce(F.col("H"), F.array().cast("array<struct<TIMESTAMP:bigint,ITEM_IDX:int,WEIGHT:float>>"))
    return grouped.select("USER_ID", h.getField("ITEM_IDX").alias("H_ITEMS"),
                          h.getField("WEIGHT").alias("H_WEIGHTS"), h.getField("TIMESTAMP").alias("H_TIMES"))


def with_stored_factors(users: DataFrame, model: Model) -> DataFrame:
    """Add FACTORS / KNOWN from the model's trained user factors (recipes that have them)."""
    table = getattr(model, "users", None)
    if table is None:
        return users
    factors = to_spark(users.sparkSession, table)
    return (users.join(factors, "USER_ID", "left")
            .withColumn("KNOWN", F.col("FACTORS").isNotNull()))


def recommend_users(model: Model, users: DataFrame, k: int, exclude_seen: bool = True) -> DataFrame:
    """Top ``k`` items per user row: USER_ID, ITEMS (item IDs, best first), SCORES, FALLBACK (true when the
    user had no history and no stored factors, so popular items were given). The batch job's kernel, with
    no filter."""
    has_factors = "FACTORS" in users.columns
    frame = users.select(
        F.lit(0).cast("bigint").alias("LINE_ID"), F.col("USER_ID").alias("INPUT"), "USER_ID",
        F.lit(None).cast("string").alias("QUERY_ITEM"), F.lit(None).cast("array<string>").alias("ITEM_LIST"),
        F.lit(None).cast("string").alias("ERROR"), *no_filter(), "H_ITEMS", "H_WEIGHTS", "H_TIMES",
        *(["FACTORS", "KNOWN"] if has_factors else []))
    scored = score_frame(frame, model, KernelSettings(k, exclude_seen, [], has_factors, False))
    return scored.select(F.col("INPUT").alias("USER_ID"), "ITEMS", "SCORES",
                         F.col("NOTE").isNotNull().alias("FALLBACK"))
