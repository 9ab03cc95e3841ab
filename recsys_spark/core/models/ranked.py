"""``popularity-count`` and ``trending-now`` models: one score per item, the same for every user (filters and
seen-item exclusion still apply per user).

>>> import numpy as np
>>> from recsys_spark.core.settings import TrendingSettings
>>> [round(float(x), 2) for x in trend_scores(np.array([10.0, 1.0]), np.array([0.0, 0.0]), TrendingSettings())]
[2.0, -1.91]
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recsys_spark.core.models.base import Model, UserBlock, id_array
from recsys_spark.core.settings import TrendingSettings


class RankedItemsModel(Model):
    """One score per item, the same for every user: the popularity (distinct users) or a trend score."""

    recipe = "popularity-count"

    def __init__(self, item_ids, popularity, scores: np.ndarray | None = None, recipe: str | None = None):
        super().__init__(item_ids, popularity)
        self.scores = (self.popularity if scores is None else scores).astype(np.float32)
        self.recipe = recipe or self.recipe

    def score_users(self, block: UserBlock) -> np.ndarray:
        return np.broadcast_to(self.scores, (block.rows, self.n_items)).copy()

    def tables(self) -> dict[str, pa.Table]:
        return {"items": self.items_table(SCORE=pa.array(self.scores, pa.float32())),
                "meta": pa.table({"RECIPE": [self.recipe]})}

    @classmethod
    def from_tables(cls, tables, settings):
        items = tables["items"]
        return cls(id_array(items["ITEM_ID"]), items["POPULARITY"].to_numpy(), items["SCORE"].to_numpy(),
                   str(tables["meta"]["RECIPE"][0]))


def trend_scores(latest: np.ndarray, previous: np.ndarray, s: TrendingSettings) -> np.ndarray:
    """Growth (latest - previous) / (previous + smoothing) in (-1, inf) for items with at least
    ``min_recent_interactions`` in the latest window; the others in [-2, -1), by their latest count."""
    growth = (latest - previous) / (previous + s.smoothing + 1e-9)
    quiet = -2 + latest / (latest.max(initial=0) + 1)
    return np.where(latest >= max(s.min_recent_interactions, 1), growth, quiet).astype(np.float32)
