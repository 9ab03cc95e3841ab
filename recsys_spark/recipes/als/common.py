"""What the ALS engines share: the starting factors and the dense numbering of string IDs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys_spark.core.settings import FactorSettings

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def initial_items(n_items: int, s: FactorSettings) -> np.ndarray:
    """Small random (items, k) starting factors, the same for every engine."""
    return np.random.default_rng(s.seed).random((n_items, s.factors), dtype=np.float32) * 0.01


def initial_users(user_ids: np.ndarray, s: FactorSettings) -> np.ndarray:
    """Small random (users, k) starting factors, each row a function of its user ID and the seed alone, so
    every engine starts a user from the same vector wherever and in whatever order it holds the users (the
    ``blocked`` engine draws them in its tasks, never seeing all users in one place)."""
    state = pd.util.hash_array(np.asarray(user_ids, dtype=object)) ^ _mix(np.uint64(s.seed & (2**64 - 1)))
    out = np.empty((len(state), s.factors), dtype=np.float32)
    for j in range(s.factors):  # a column at a time: O(users) temporaries
        with np.errstate(over="ignore"):  # wrapping arithmetic, as meant
            column = state + np.uint64(j + 1) * _GOLDEN
        out[:, j] = (_mix(column) >> np.uint64(40)).astype(np.float32) * 2.0**-24
    return out * np.float32(0.01)


def _mix(z):
    """splitmix64's finaliser: a well-spread 64-bit value from any 64-bit value (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def sorted_codes(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(distinct values sorted, each value's position among them): the dense numbering of string IDs."""
    encoded = values.dictionary_encode()
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return encoded.dictionary.take(pa.array(order)), rank[encoded.indices.to_numpy()]
