"""The factor model of implicit ALS (``user-personalization``, ``personalized-ranking``): user x item factor
products, users who are new or changed since training folded in from their history with the same solver.

>>> import numpy as np
>>> from recsys_spark.core.settings import FactorSettings
>>> model = FactorModel(np.array(["a", "b"], dtype=object), np.ones(2), np.eye(2), FactorSettings(factors=2))
>>> model.score_users(UserBlock.from_lists([[1]])).argmax(axis=1).tolist()
[1]
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pyarrow as pa

from recsys_spark.core.kernels.als import gram, solve_block
from recsys_spark.core.models.base import Model, UserBlock, id_array, matrix_of, vectors
from recsys_spark.core.settings import FactorSettings

FOLD_IN_STEPS = 12  # conjugate gradient converges in at most `factors` steps; 12 is within 1e-3 at rank 64


class FactorModel(Model):
    """Item factors (items, k) + the confidence settings to fold users in; ``users`` (USER_ID, FACTORS)
    holds the trained users' factors: an Arrow table, or, straight from a distributed fit, a Spark DataFrame
    this module only passes on (the version store writes it from the executors)."""

    recipe = "user-personalization"

    def __init__(self, item_ids, popularity, item_factors: np.ndarray, settings: FactorSettings,
                 users=None):
        super().__init__(item_ids, popularity)
        self.item_factors = item_factors.astype(np.float32)
        self.settings = settings
        self.gram = gram(self.item_factors, settings.regularization)
        self.users = users

    @property
    def history_limit(self) -> int:
        return self.settings.fold_in_max_history

    def user_vectors(self, block: UserBlock) -> np.ndarray:
        """(rows, k): stored factors where ``block.known``, else solved from the row's history."""
        k = self.item_factors.shape[1]
        out = np.zeros((block.rows, k), dtype=np.float32)
        known = block.known if block.known is not None else np.zeros(block.rows, dtype=bool)
        if block.factors is not None and known.any():
            out[known] = block.factors[known]
        if not known.all():
            out[~known] = self.fold_in(block, ~known)
        return out

    def fold_in(self, block: UserBlock, rows: np.ndarray) -> np.ndarray:
        block = block.recent(self.history_limit)
        history = block.matrix(block.weights, self.n_items)[np.flatnonzero(rows)]
        conf = 1.0 + self.settings.alpha * history.data
        x0 = np.zeros((history.shape[0], self.item_factors.shape[1]), dtype=np.float32)
        return solve_block(history.indptr, history.indices, conf, x0, self.item_factors, self.gram, FOLD_IN_STEPS)

    transient = (*Model.transient, "item_factors_t")

    @cached_property
    def item_factors_t(self) -> np.ndarray:
        """The item factors transposed, contiguous (a second copy): BLAS multiplies a few rows by it 1.5-3x
        faster than by the transposed view (16 users x 20,000 items: 0.67 against 2.0 ms on one core), and
        256 rows about as fast."""
        return np.ascontiguousarray(self.item_factors.T)

    def score_users(self, block: UserBlock) -> np.ndarray:
        return self.user_vectors(block) @ self.item_factors_t

    def tables(self) -> dict[str, pa.Table]:
        tables = {"items": self.items_table(FACTORS=vectors(self.item_factors))}
        if self.users is not None:
            tables["users"] = self.users
        return tables

    @classmethod
    def from_tables(cls, tables, settings):
        items = tables["items"]
        return cls(id_array(items["ITEM_ID"]), items["POPULARITY"].to_numpy(), matrix_of(items["FACTORS"]),
                   settings, tables.get("users"))


def user_table(user_ids: np.ndarray, factors: np.ndarray) -> pa.Table:
    """The trained users' factors as the model's ``users`` table (USER_ID, FACTORS)."""
    return pa.table({"USER_ID": pa.array(user_ids, pa.string()), "FACTORS": vectors(factors)})


class RankingModel(FactorModel):
    """A user-personalization model that reorders a given item list (the service's personalized-ranking)."""

    recipe = "personalized-ranking"
