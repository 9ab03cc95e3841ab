"""``sims``: item-item co-occurrence similarity from user histories (the managed service's SIMS).

Fitting is one Spark self-join of each user's (capped) history: co-occurrence counts c_ij, kept when
c_ij >= ``min_cointeraction_count``, scored c_ij / (n_i n_j) ^ ``popularity_discount_factor``, the top
``similar_items`` neighbours per item kept as a sparse (items, items) matrix. Related-items queries read a
row of it; user queries push the user's history (event weight, optionally decayed by age) through it, as
SAR does. Items with no similarity to the query rank after every similar item, by popularity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import Window
from pyspark.sql import functions as F

from recsys_spark.recipes.base import Model, Recipe, TrainingSet, UserBlock, to_pandas
from recsys_spark.recipes.settings import SimsSettings

DAY = 86400.0


class ItemSimilarityModel(Model):
    """A sparse (items, items) similarity matrix; scores = history @ similarity (SAR's shape)."""

    recipe = "sims"

    def __init__(self, item_ids, popularity, similarity, settings: SimsSettings, reference_time: int):
        super().__init__(item_ids, popularity)
        self.similarity = similarity.tocsr().astype(np.float32)
        self.settings, self.reference_time = settings, reference_time
        # Unrelated items: below every similar one (scores > 0), ordered by popularity, in [-1, 0).
        self.fallback = (self.popularity / (self.popularity.max(initial=0) + 1) - 1).astype(np.float32)

    @property
    def history_limit(self) -> int:
        return self.settings.max_history

    def _with_fallback(self, scores: np.ndarray) -> np.ndarray:
        return np.where(scores > 0, scores, self.fallback).astype(np.float32)

    def score_users(self, block: UserBlock) -> np.ndarray:
        block = block.recent(self.history_limit)
        weights = block.weights.astype(np.float64)
        half_life = self.settings.time_decay_half_life_days
        if half_life:
            age_days = np.maximum(self.reference_time - block.timestamps, 0) / DAY
            weights = weights * np.exp2(-age_days / half_life)
        affinity = block.matrix(weights.astype(np.float32), self.n_items)
        return self._with_fallback((affinity @ self.similarity).toarray())

    def score_items(self, items: np.ndarray) -> np.ndarray:
        return self._with_fallback(self.similarity[items].toarray())

    def tables(self) -> dict[str, pd.DataFrame]:
        coo = self.similarity.tocoo()
        return {"items": self.items_table(),
                "similarity": pd.DataFrame({"ITEM_IDX": coo.row.astype(np.int32),
                                            "SIMILAR_IDX": coo.col.astype(np.int32),
                                            "SCORE": coo.data.astype(np.float32)}),
                "meta": pd.DataFrame({"REFERENCE_TIME": [self.reference_time]})}

    @classmethod
    def from_tables(cls, tables, settings):
        from scipy import sparse

        items, sim = tables["items"], tables["similarity"]
        n = len(items)
        matrix = sparse.csr_matrix((sim["SCORE"].to_numpy(), (sim["ITEM_IDX"].to_numpy(),
                                                              sim["SIMILAR_IDX"].to_numpy())), shape=(n, n))
        return cls(items["ITEM_ID"].to_numpy(dtype=object), items["POPULARITY"].to_numpy(), matrix, settings,
                   int(tables["meta"]["REFERENCE_TIME"].iloc[0]))


class Sims(Recipe):
    name = "sims"
    model_class = ItemSimilarityModel

    def fit(self, data: TrainingSet) -> ItemSimilarityModel:
        from scipy import sparse

        s: SimsSettings = self.settings
        pairs = data.user_items().select("USER_ID", "ITEM_IDX", "NEWEST")
        pairs = _within_percentiles(pairs, "USER_ID", s.min_user_history_length_percentile,
                                    s.max_user_history_length_percentile)
        pairs = _within_percentiles(pairs, "ITEM_IDX", s.min_item_interaction_count_percentile,
                                    s.max_item_interaction_count_percentile)
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
        n = len(data.item_ids)
        matrix = sparse.csr_matrix((top["S"].to_numpy(), (top["I"].to_numpy(), top["J"].to_numpy())), shape=(n, n))
        return ItemSimilarityModel(data.item_ids, data.popularity, matrix, s, data.newest_timestamp)


def _within_percentiles(pairs, key: str, low: float, high: float):
    """Rows whose ``key`` has a row count between the ``low`` and ``high`` percentiles of all keys' counts."""
    if low <= 0 and high >= 1:
        return pairs
    counts = pairs.groupBy(key).agg(F.count(F.lit(1)).alias("N"))
    lo, hi = counts.approxQuantile("N", [low, high], 0.001)
    return pairs.join(counts.where((F.col("N") >= lo) & (F.col("N") <= hi)).select(key), key)
