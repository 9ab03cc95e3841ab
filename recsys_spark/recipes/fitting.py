"""What every recipe's Spark estimator shares (pyspark.ml's protocol): settings in, :meth:`Recipe.fit` on a
:class:`TrainingSet` -> a core :class:`~recsys_spark.core.models.base.Model` that holds no training data.

>>> model = recipe_for("sims", {}).fit(TrainingSet.build(interactions))      # doctest: +SKIP
>>> model.score_users(UserBlock.from_lists([[0, 3]])).shape                   # doctest: +SKIP
(1, 1682)
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.core.models.base import Model
from recsys_spark.core.settings import RecipeSettings


@dataclass(frozen=True)
class TrainingSet:
    """What recipes fit on. ``interactions``: USER_ID, ITEM_ID, ITEM_IDX (int, into ``item_ids``),
    TIMESTAMP (long), WEIGHT (float, the event type's weight); ``item_ids``: the catalog (sorted item IDs
    with at least one interaction); ``popularity``: distinct users per item (what every model falls back
    on), aligned with ``item_ids``; ``rows``: the number of interactions; ``checkpoint_dir``: where long
    Spark lineages may be checkpointed."""

    spark: SparkSession
    interactions: DataFrame
    item_ids: np.ndarray
    popularity: np.ndarray
    newest_timestamp: int
    rows: int = 0
    checkpoint_dir: str | None = None

    @classmethod
    def build(cls, interactions: DataFrame, checkpoint_dir: str | None = None) -> "TrainingSet":
        """Index ``interactions`` (USER_ID, ITEM_ID, TIMESTAMP, WEIGHT): one small Spark job over the
        items, then a broadcast join adds ITEM_IDX."""
        spark = interactions.sparkSession
        # Two aggregations rather than countDistinct beside the others, which Spark runs by doubling every
        # row (Expand) before two shuffles: 16-19 s against 13-15 s at 20 million interactions here.
        per_item = (interactions.groupBy("ITEM_ID", "USER_ID")
                    .agg(F.max("TIMESTAMP").alias("NEWEST"), F.count(F.lit(1)).alias("ROWS"))
                    .groupBy("ITEM_ID")
                    .agg(F.count(F.lit(1)).alias("USERS"), F.max("NEWEST").alias("NEWEST"),
                         F.sum("ROWS").alias("ROWS")))
        # Sorted here, not by Spark (its range partitioning adds a sampling job and a shuffle); Python orders
        # strings by code point, as Spark orders their UTF-8 bytes.
        per_item = to_pandas(per_item).sort_values("ITEM_ID", ignore_index=True)
        item_ids = per_item["ITEM_ID"].to_numpy(dtype=object)
        index = id_index(spark, item_ids, "ITEM_ID", "ITEM_IDX")
        indexed = interactions.join(F.broadcast(index), "ITEM_ID")
        newest = int(per_item["NEWEST"].max()) if len(per_item) else 0
        return cls(spark, indexed, item_ids, per_item["USERS"].to_numpy(dtype=np.float32), newest,
                   int(per_item["ROWS"].sum()), checkpoint_dir)

    def user_items(self) -> DataFrame:
        """One row per (user, item): USER_ID, ITEM_IDX, WEIGHT (summed), MAX_WEIGHT, COUNT, NEWEST."""
        return self.interactions.groupBy("USER_ID", "ITEM_IDX").agg(
            F.sum("WEIGHT").cast("float").alias("WEIGHT"), F.max("WEIGHT").cast("float").alias("MAX_WEIGHT"),
            F.count(F.lit(1)).alias("COUNT"), F.max("TIMESTAMP").alias("NEWEST"))


class Recipe(ABC):
    """An estimator: settings in, :meth:`fit` -> :class:`Model`. ``name`` is its registry entry's."""

    name: str

    def __init__(self, settings: RecipeSettings):
        self.settings = settings

    @abstractmethod
    def fit(self, data: TrainingSet) -> Model:
        """Fit on ``data`` (Spark does the heavy part); the returned model holds no training data."""


def pack(**arrays: np.ndarray) -> bytes:
    """numpy arrays -> one bytes value (how blocks travel through Spark). Pickle protocol 5 copies the
    arrays' buffers as they are: ~10x faster than ``np.savez``, which checksums everything."""
    return pickle.dumps(arrays, protocol=5)


def unpack(blob: bytes) -> dict[str, np.ndarray]:
    """The arrays of a :func:`pack` value."""
    return pickle.loads(blob)


def to_spark(spark: SparkSession, frame: pd.DataFrame | pa.Table) -> DataFrame:
    """A pandas frame (array cells as numpy arrays) or an Arrow table as a Spark DataFrame, through Arrow."""
    if isinstance(frame, pd.DataFrame):
        frame = pa.Table.from_pandas(frame, preserve_index=False)
    return spark.createDataFrame(frame)


def id_index(spark: SparkSession, ids: np.ndarray, key: str, position: str) -> DataFrame:
    """``ids`` (the dense index order) as a small DataFrame of ``key`` -> ``position`` (int, 0..n-1) to join on.

    >>> id_index(spark, np.array(["a", "b"], dtype=object), "ITEM_ID", "ITEM_IDX")   # doctest: +SKIP
    DataFrame[ITEM_ID: string, ITEM_IDX: int]
    """
    return to_spark(spark, pd.DataFrame({key: ids, position: np.arange(len(ids), dtype=np.int32)}))


def to_pandas(frame: DataFrame) -> pd.DataFrame:
    """A (small) Spark DataFrame collected through Arrow, whatever the session's Arrow setting."""
    return frame.toArrow().to_pandas()
