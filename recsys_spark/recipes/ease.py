"""``ease``: a closed-form item-item model (Steck, "Embarrassingly Shallow Autoencoders", 2019).

B = I - P / diag(P) with P = (X^T X + lambda I)^-1, X the user x item matrix. Spark computes the Gram
matrix X^T X (each task the sparse product of its users' rows, summed on the driver); the driver inverts
it once. The driver holds three dense items x items float64 matrices, so catalogs are limited:
24 x items^2 bytes (2.4 GB at 10,000 items, 9.6 GB at 20,000); larger ones are refused before the work.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys_spark.errors import UserError
from recsys_spark.recipes.base import Model, Recipe, TrainingSet, UserBlock, pack, unpack
from recsys_spark.recipes.settings import EaseSettings


class EaseModel(Model):
    """Dense item-item weights B (items, items); scores = history @ B."""

    recipe = "ease"

    def __init__(self, item_ids, popularity, weights: np.ndarray):
        super().__init__(item_ids, popularity)
        self.weights = weights.astype(np.float32)

    def score_users(self, block: UserBlock) -> np.ndarray:
        history = block.matrix(block.weights, self.n_items, combine="max")
        return np.asarray(history @ self.weights, dtype=np.float32)

    def score_items(self, items: np.ndarray) -> np.ndarray:
        return self.weights[items].copy()

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"items": self.items_table(WEIGHTS=list(self.weights))}

    @classmethod
    def from_tables(cls, tables, settings):
        items = tables["items"]
        return cls(items["ITEM_ID"].to_numpy(dtype=object), items["POPULARITY"].to_numpy(),
                   np.stack(items["WEIGHTS"].to_numpy()))


def memory_needed(items: int) -> int:
    """Bytes the driver needs to solve EASE for ``items`` items (three float64 items x items matrices)."""
    return 24 * items * items


def check_size(items: int, settings: EaseSettings) -> None:
    """Refuse a catalog the driver cannot hold, before any work, saying the limit."""
    need = memory_needed(items)
    if items > settings.max_items:
        raise UserError(f"ease: the catalog has {items:,} items, more than max_items = {settings.max_items:,} "
                        f"(the driver would need {need / 2**30:.1f} GiB); use sims or user-personalization, "
                        "or raise max_items on a driver with enough memory")
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else None
    if available and need > available:
        raise UserError(f"ease: {items:,} items need {need / 2**30:.1f} GiB on the driver, only "
                        f"{available / 2**30:.1f} GiB is free")


class Ease(Recipe):
    name = "ease"
    model_class = EaseModel

    def fit(self, data: TrainingSet) -> EaseModel:
        s: EaseSettings = self.settings
        n = len(data.item_ids)
        check_size(n, s)
        gram = _gram(data, n)
        gram[np.diag_indices(n)] += s.regularization
        p = np.linalg.inv(gram)
        del gram
        weights = -p / np.diag(p)[None, :]
        weights[np.diag_indices(n)] = 0.0
        return EaseModel(data.item_ids, data.popularity, weights)


def _gram(data: TrainingSet, n: int) -> np.ndarray:
    """X^T X (items, items) float64, X holding each (user, item)'s largest event weight."""
    def partial(batches):
        from scipy import sparse

        table = pa.Table.from_batches(list(batches))
        if table.num_rows == 0:
            return
        users = np.unique(table.column("USER_ID").to_numpy(zero_copy_only=False), return_inverse=True)[1]
        x = sparse.csr_matrix((table.column("MAX_WEIGHT").to_numpy().astype(np.float64),
                               (users, table.column("ITEM_IDX").to_numpy())), shape=(users.max() + 1, n))
        g = (x.T @ x).tocoo()
        yield pa.record_batch([pa.array([pack(i=g.row.astype(np.int32), j=g.col.astype(np.int32), v=g.data)],
                                        pa.binary())], names=["GRAM"])

    parts = data.spark.sparkContext.defaultParallelism
    pairs = data.user_items().select("USER_ID", "ITEM_IDX", "MAX_WEIGHT").repartition(parts, "USER_ID")
    gram = np.zeros((n, n), dtype=np.float64)
    for row in pairs.mapInArrow(partial, "GRAM binary").toLocalIterator():
        g = unpack(row.GRAM)
        np.add.at(gram, (g["i"], g["j"]), g["v"])
    return gram
