"""The ``sims`` model: a sparse (items, items) similarity matrix. Related-items queries read a row of it;
user queries push the user's history (event weight, optionally decayed by age) through it, as SAR does.
Items with no similarity to the query rank after every similar item, by popularity.

>>> import numpy as np
>>> from scipy import sparse
>>> from recsys_spark.core.settings import SimsSettings
>>> sim = sparse.csr_matrix(np.array([[0, 0.5, 0], [0.5, 0, 0], [0, 0, 0]], dtype=np.float32))
>>> model = ItemSimilarityModel(np.array(["a", "b", "c"], dtype=object), np.array([1, 1, 5]), sim, SimsSettings(), 0)
>>> model.score_items(np.array([0])).argmax(axis=1).tolist()
[1]
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recsys_spark.core.models.base import Model, UserBlock, id_array
from recsys_spark.core.settings import SimsSettings

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

    def tables(self) -> dict[str, pa.Table]:
        coo = self.similarity.tocoo()
        return {"items": self.items_table(),
                "similarity": pa.table({"ITEM_IDX": pa.array(coo.row.astype(np.int32)),
                                        "SIMILAR_IDX": pa.array(coo.col.astype(np.int32)),
                                        "SCORE": pa.array(coo.data.astype(np.float32))}),
                "meta": pa.table({"REFERENCE_TIME": pa.array([self.reference_time], pa.int64())})}

    @classmethod
    def from_tables(cls, tables, settings):
        from scipy import sparse

        items, sim = tables["items"], tables["similarity"]
        n = items.num_rows
        matrix = sparse.csr_matrix((sim["SCORE"].to_numpy(), (sim["ITEM_IDX"].to_numpy(),
                                                              sim["SIMILAR_IDX"].to_numpy())), shape=(n, n))
        return cls(id_array(items["ITEM_ID"]), items["POPULARITY"].to_numpy(), matrix, settings,
                   int(tables["meta"]["REFERENCE_TIME"][0].as_py()))
