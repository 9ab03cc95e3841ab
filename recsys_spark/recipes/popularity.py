"""``popularity-count`` and ``trending-now`` estimators: one score per item from counts Spark computes over
the interactions (the model: :mod:`recsys_spark.core.models.ranked`)."""

from __future__ import annotations

import numpy as np
from pyspark.sql import functions as F

from recsys_spark.core.models.ranked import RankedItemsModel, trend_scores
from recsys_spark.core.settings import TrendingSettings
from recsys_spark.recipes.fitting import Recipe, TrainingSet, to_pandas

DAY = 86400


class PopularityCount(Recipe):
    name = "popularity-count"

    def fit(self, data: TrainingSet) -> RankedItemsModel:
        return RankedItemsModel(data.item_ids, data.popularity)


class TrendingNow(Recipe):
    """Growth of each item's interaction count from the window before to the latest window."""

    name = "trending-now"

    def fit(self, data: TrainingSet) -> RankedItemsModel:
        s: TrendingSettings = self.settings
        window = int(s.window_days * DAY)
        end = data.newest_timestamp
        ts = F.col("TIMESTAMP")
        counts = (data.interactions.where(ts > end - 2 * window)
                  .groupBy("ITEM_IDX")
                  .agg(F.sum(F.when(ts > end - window, 1).otherwise(0)).alias("LATEST"),
                       F.sum(F.when(ts <= end - window, 1).otherwise(0)).alias("PREVIOUS")))
        counts = to_pandas(counts)
        latest = np.zeros(len(data.item_ids))
        previous = np.zeros(len(data.item_ids))
        latest[counts["ITEM_IDX"].to_numpy()] = counts["LATEST"].to_numpy()
        previous[counts["ITEM_IDX"].to_numpy()] = counts["PREVIOUS"].to_numpy()
        return RankedItemsModel(data.item_ids, data.popularity, trend_scores(latest, previous, s), "trending-now")
