"""The ``ease`` model (Steck, "Embarrassingly Shallow Autoencoders", 2019): dense item-item weights B
(items, items), scores = history @ B. The driver that solves it holds three dense items x items float64
matrices, so catalogs are limited (:func:`check_size`).

>>> from recsys_spark.core.settings import EaseSettings
>>> memory_needed(10_000) / 2**30 > 2
True
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from recsys_spark.core.models.base import Model, UserBlock, id_array, matrix_of, vectors
from recsys_spark.core.settings import EaseSettings
from recsys_spark.errors import UserError


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

    def tables(self) -> dict[str, pa.Table]:
        return {"items": self.items_table(WEIGHTS=vectors(self.weights))}

    @classmethod
    def from_tables(cls, tables, settings):
        items = tables["items"]
        return cls(id_array(items["ITEM_ID"]), items["POPULARITY"].to_numpy(), matrix_of(items["WEIGHTS"]))


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
