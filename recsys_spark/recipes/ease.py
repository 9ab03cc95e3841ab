"""``ease``: a closed-form item-item model (Steck, "Embarrassingly Shallow Autoencoders", 2019).

B = I - P / diag(P) with P = (X^T X + lambda I)^-1, X the user x item matrix. Spark computes the Gram
matrix X^T X (each task the sparse product of its users' rows, summed on the driver); the driver inverts
it once. The driver holds three dense items x items float64 matrices, so catalogs are limited:
24 x items^2 bytes (2.4 GB at 10,000 items, 9.6 GB at 20,000); larger ones are refused before the work.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recsys_spark.core.models.ease import EaseModel, check_size
from recsys_spark.core.settings import EaseSettings
from recsys_spark.partitioning import by_key
from recsys_spark.recipes.fitting import Recipe, TrainingSet, pack, unpack


class Ease(Recipe):
    name = "ease"

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
    pairs = by_key(data.user_items().select("USER_ID", "ITEM_IDX", "MAX_WEIGHT"), parts, "USER_ID")
    gram = np.zeros((n, n), dtype=np.float64)
    for row in pairs.mapInArrow(partial, "GRAM binary").toLocalIterator():
        g = unpack(row.GRAM)
        np.add.at(gram, (g["i"], g["j"]), g["v"])
    return gram
