"""``sims``: item-item co-occurrence similarity from user histories (the managed service's SIMS); the
model is :mod:`recsys_spark.core.models.similarity`.

Fitting counts co-occurrences in each user's (capped) history: c_ij, kept when c_ij >= ``min_cointeraction_count``,
scored c_ij / (n_i n_j) ^ ``popularity_discount_factor``, the top ``similar_items`` neighbours per item kept as a
sparse (items, items) matrix. Up to :data:`LOCAL_MAX_PAIRS` (user, item) pairs and
:data:`LOCAL_MAX_COOCCURRENCES` counted triples, the pairs are collected and counted by scipy on the driver
(:mod:`recsys_spark.core.kernels.cooccurrence`: a fraction of a second where the Spark self-join's five
shuffles take seconds); above, by a Spark self-join. Both give the same matrix. Related-items queries read a
row of it; user queries push the user's history (event weight, optionally decayed by age) through it, as
SAR does. Items with no similarity to the query rank after every similar item, by popularity.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow.compute as pc
from pyspark.sql import Window
from pyspark.sql import functions as F

from recsys_spark.core.kernels.cooccurrence import cooccurrences, recent_pairs, top_similar
from recsys_spark.core.models.similarity import ItemSimilarityModel
from recsys_spark.core.settings import SimsSettings
from recsys_spark.recipes.fitting import Recipe, TrainingSet, to_pandas

log = logging.getLogger(__name__)
LOCAL_MAX_PAIRS = 2_000_000  # (user, item) pairs collected to the driver: ~30 bytes each
LOCAL_MAX_COOCCURRENCES = 100_000_000  # triples scipy's product visits: ~16 bytes each at its peak


class Sims(Recipe):
    name = "sims"

    def fit(self, data: TrainingSet) -> ItemSimilarityModel:
        from scipy import sparse

        s: SimsSettings = self.settings
        pairs = data.user_items().select("USER_ID", "ITEM_IDX", "NEWEST")
        pairs = _within_percentiles(pairs, "USER_ID", s.min_user_history_length_percentile,
                                    s.max_user_history_length_percentile)
        pairs = _within_percentiles(pairs, "ITEM_IDX", s.min_item_interaction_count_percentile,
                                    s.max_item_interaction_count_percentile)
        n = len(data.item_ids)
        top = _local_top(pairs, n, s) if data.rows <= LOCAL_MAX_PAIRS else None
        if top is None:
            top = _spark_top(pairs, s)
        matrix = sparse.csr_matrix((top[2], (top[0], top[1])), shape=(n, n))
        return ItemSimilarityModel(data.item_ids, data.popularity, matrix, s, data.newest_timestamp)


def _spark_top(pairs, s: SimsSettings):
    """(item, neighbour, similarity) arrays by a Spark self-join of the capped histories."""
    recent = Window.partitionBy("USER_ID").orderBy(F.desc("NEWEST"), "ITEM_IDX")
    history = (pairs.withColumn("R", F.row_number().over(recent)).where(F.col("R") <= s.max_history)
               .select("USER_ID", "ITEM_IDX").persist())
    users_per_item = history.groupBy("ITEM_IDX").agg(F.count(F.lit(1)).alias("N"))
    a, b = history.alias("a"), history.alias("b")
    counts = (a.join(b, (F.col("a.USER_ID") == F.col("b.USER_ID")) & (F.col("a.ITEM_IDX") < F.col("b.ITEM_IDX")))
              .groupBy(F.col("a.ITEM_IDX").alias("I"), F.col("b.ITEM_IDX").alias("J"))
              .agg(F.count(F.lit(1)).alias("C"))
              .where(F.col("C") >= s.min_cointeraction_count))
    ni, nj = users_per_item.alias("ni"), users_per_item.alias("nj")
    scored = (counts.join(ni, F.col("I") == F.col("ni.ITEM_IDX")).join(nj, F.col("J") == F.col("nj.ITEM_IDX"))
              .select("I", "J", (F.col("C") / F.pow(F.col("ni.N") * F.col("nj.N"),
                                                      F.lit(s.popularity_discount_factor))).alias("S")))
    both = scored.unionByName(scored.select(F.col("J").alias("I"), F.col("I").alias("J"), "S"))
    best = Window.partitionBy("I").orderBy(F.desc("S"), "J")
    top = (both.withColumn("R", F.row_number().over(best)).where(F.col("R") <= s.similar_items)
           .select("I", "J", F.col("S").cast("float").alias("S")))
    top = to_pandas(top)
    history.unpersist()
    return top["I"].to_numpy(), top["J"].to_numpy(), top["S"].to_numpy()


def _local_top(pairs, n_items: int, s: SimsSettings):
    """(item, neighbour, similarity) arrays counted on the driver; None when the capped histories would
    visit more than LOCAL_MAX_COOCCURRENCES triples."""
    table = pairs.toArrow()
    users = pc.dictionary_encode(table.column("USER_ID").combine_chunks()).indices.to_numpy().astype(np.int64)
    items = table.column("ITEM_IDX").to_numpy().astype(np.int64)
    keep = recent_pairs(users, items, table.column("NEWEST").to_numpy(), s.max_history)
    visits = cooccurrences(users[keep])
    if visits > LOCAL_MAX_COOCCURRENCES:
        log.info("sims: %d co-occurrences to count, above the local limit: counting them in Spark", visits)
        return None
    return top_similar(users[keep], items[keep], n_items, s)


def _within_percentiles(pairs, key: str, low: float, high: float):
    """Rows whose ``key`` has a row count between the ``low`` and ``high`` percentiles of all keys' counts."""
    if low <= 0 and high >= 1:
        return pairs
    counts = pairs.groupBy(key).agg(F.count(F.lit(1)).alias("N"))
    lo, hi = counts.approxQuantile("N", [low, high], 0.001)
    return pairs.join(counts.where((F.col("N") >= lo) & (F.col("N") <= hi)).select(key), key)
