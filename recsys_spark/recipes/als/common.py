"""What the ALS engines share: the starting factors and the dense numbering of string IDs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_spark.core.settings import FactorSettings


def initial_factors(user_ids: np.ndarray, n_items: int, s: FactorSettings) -> tuple[np.ndarray, np.ndarray]:
    """Small random (users, k) and (items, k) factors; users' rows drawn in sorted-ID order, so every engine
    starts each user from the same vector whatever order it numbers them in."""
    rng = np.random.default_rng(s.seed)
    drawn = rng.random((len(user_ids), s.factors), dtype=np.float32) * 0.01
    items = rng.random((n_items, s.factors), dtype=np.float32) * 0.01
    users = np.empty_like(drawn)
    users[pc.sort_indices(pa.array(user_ids, pa.string())).to_numpy()] = drawn
    return users, items


def sorted_codes(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(distinct values sorted, each value's position among them): the dense numbering of string IDs."""
    encoded = values.dictionary_encode()
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return encoded.dictionary.take(pa.array(order)), rank[encoded.indices.to_numpy()]
