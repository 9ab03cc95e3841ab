"""``popularity-count`` and ``trending-now``: the same recommendation for every user (filters and seen-item
exclusion still apply per user), from counts Spark computes over the interactions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from recsys_spark.recipes.base import Model, Recipe, TrainingSet, UserBlock, to_pandas
from recsys_spark.recipes.settings import TrendingSettings

DAY = 86400


class RankedItemsModel(Model):
    """One score per item, the same for every user: the popularity (distinct users) or a trend score."""

    recipe = "popularity-count"

    def __init__(self, item_ids, popularity, scores: np.ndarray | None = None, recipe: str | None = None):
        super().__init__(item_ids, popularity)
        self.scores = (self.popularity if scores is None else scores).astype(np.float32)
        self.recipe = recipe or self.recipe

    def score_users(self, block: UserBlock) -> np.ndarray:
        return np.broadcast_to(self.scores, (block.rows, self.n_items)).copy()

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"items": self.items_table(SCORE=self.scores), "meta": pd.DataFrame({"RECIPE": [self.recipe]})}

    @classmethod
    def from_tables(cls, tables, settings):
        items = tables["items"]
        return cls(items["ITEM_ID"].to_numpy(dtype=object), items["POPULARITY"].to_numpy(),
                   items["SCORE"].to_numpy(), str(tables["meta"]["RECIPE"].iloc[0]))


class PopularityCount(Recipe):
    name = "popularity-count"
    model_class = RankedItemsModel

    def fit(self, data: TrainingSet) -> RankedItemsModel:
        return RankedItemsModel(data.item_ids, data.popularity)


class TrendingNow(Recipe):
    """Growth of each item's interaction count from the window before to the latest window."""

    name = "trending-now"
    model_class = RankedItemsModel

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


def trend_scores(latest: np.ndarray, previous: np.ndarray, s: TrendingSettings) -> np.ndarray:
    """Growth (latest - previous) / (previous + smoothing) in (-1, inf) for items with at least
    ``min_recent_interactions`` in the latest window; the others in [-2, -1), by their latest count."""
    growth = (latest - previous) / (previous + s.smoothing + 1e-9)
    quiet = -2 + latest / (latest.max(initial=0) + 1)
    return np.where(latest >= max(s.min_recent_interactions, 1), growth, quiet).astype(np.float32)
