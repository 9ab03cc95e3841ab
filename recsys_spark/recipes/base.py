"""The one interface every recipe shares (implicit's shape, pyspark.ml's protocol).

A :class:`Recipe` fits on a :class:`TrainingSet` (a pinned snapshot of the interactions with dense
integer item indexes) and returns a :class:`Model`. A model is plain numpy state, small enough to
broadcast, that scores a block of users (their histories, and stored factors where the recipe has them)
or a block of query items against every item of its catalog as one (rows, items) float32 matrix. Training
runs on Spark; scoring runs inside Spark tasks (:mod:`recsys_spark.inference`), so a model never needs
the training data once fitted, and saves to and loads from Parquet tables.

>>> model = recipe_for("sims", settings).fit(training)                  # doctest: +SKIP
>>> model.score_users(UserBlock.from_histories(...)).shape             # doctest: +SKIP
(1024, 1682)
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

from recsys_spark.recipes.settings import RecipeSettings


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
        per_item = (interactions.groupBy("ITEM_ID")
                    .agg(F.countDistinct("USER_ID").alias("USERS"), F.max("TIMESTAMP").alias("NEWEST"),
                         F.count(F.lit(1)).alias("ROWS"))
                    .orderBy("ITEM_ID"))
        per_item = to_pandas(per_item)
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


@dataclass
class UserBlock:
    """A block of users to score. ``indptr`` (rows + 1) and ``items`` / ``weights`` / ``timestamps``
    (one entry per interaction, grouped by row) are the users' histories in CSR layout, item indexes into
    the model's catalog; ``factors`` (rows, k) holds stored user factors where the recipe has them, with
    ``known`` (rows,) saying which rows have a usable stored vector (others are solved from their history)."""

    indptr: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    timestamps: np.ndarray
    factors: np.ndarray | None = None
    known: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def from_lists(cls, items: list[list[int]], weights: list[list[float]] | None = None,
                   timestamps: list[list[int]] | None = None) -> "UserBlock":
        """A block from Python lists (tests and small calls); weights default to 1, timestamps to 0."""
        lengths = np.array([len(x) for x in items], dtype=np.int64)
        flat = lambda lists, dtype, fill: (np.concatenate([np.asarray(x, dtype=dtype) for x in lists])  # noqa: E731
                                           if lists is not None and lengths.sum() else np.full(lengths.sum(), fill,
                                                                                               dtype=dtype))
        return cls(np.concatenate([[0], np.cumsum(lengths)]), flat(items, np.int64, 0),
                   flat(weights, np.float32, 1.0), flat(timestamps, np.int64, 0))

    def select(self, rows: np.ndarray) -> "UserBlock":
        """The rows where the boolean mask ``rows`` is true, as a new block."""
        lengths = np.diff(self.indptr)[rows]
        entries = np.repeat(rows, np.diff(self.indptr))
        pick = lambda a: None if a is None else a[rows]  # noqa: E731
        return UserBlock(np.concatenate([[0], np.cumsum(lengths)]), self.items[entries], self.weights[entries],
                         self.timestamps[entries], pick(self.factors), pick(self.known))

    def recent(self, limit: int) -> "UserBlock":
        """The same block keeping each row's ``limit`` most recent history entries (bounds fold-in and
        affinity cost for very long histories; exclusion of seen items still uses the whole history)."""
        if np.diff(self.indptr).max(initial=0) <= limit:
            return self
        rows = self.row_ids()
        order = np.lexsort((-self.timestamps, rows))
        keep = order[np.arange(len(order)) - self.indptr[rows[order]] < limit]
        keep.sort()
        counts = np.bincount(rows[keep], minlength=self.rows)
        return UserBlock(np.concatenate([[0], np.cumsum(counts)]), self.items[keep], self.weights[keep],
                         self.timestamps[keep], self.factors, self.known)

    def row_ids(self) -> np.ndarray:
        """The row of every history entry."""
        return np.repeat(np.arange(self.rows), np.diff(self.indptr))

    def matrix(self, values: np.ndarray, n_items: int, combine: str = "sum"):
        """The histories as a (rows, n_items) scipy CSR matrix of ``values`` (one per history entry),
        duplicates of a (row, item) combined by ``sum`` or ``max``."""
        from scipy import sparse

        rows, items = self.row_ids(), self.items
        valid = (items >= 0) & (items < n_items)
        rows, items, values = rows[valid], items[valid], values[valid].astype(np.float32)
        if combine == "max":
            key = rows.astype(np.int64) * n_items + items
            order = np.lexsort((-values, key))
            first = np.ones(len(order), dtype=bool)
            first[1:] = key[order][1:] != key[order][:-1]
            rows, items, values = rows[order][first], items[order][first], values[order][first]
        m = sparse.csr_matrix((values, (rows, items)), shape=(self.rows, n_items))
        m.sum_duplicates()
        return m


class Model(ABC):
    """A fitted recipe. ``item_ids`` is the catalog (column j of every score block is ``item_ids[j]``);
    ``popularity`` (distinct users per item) ranks items for users the model cannot personalise."""

    recipe: str
    #: How many of a user's most recent interactions the model reads (see :meth:`UserBlock.recent`).
    history_limit = 500

    def __init__(self, item_ids: np.ndarray, popularity: np.ndarray):
        self.item_ids, self.popularity = item_ids, popularity.astype(np.float32)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @abstractmethod
    def score_users(self, block: UserBlock) -> np.ndarray:
        """(block.rows, n_items) float32 scores; higher is better."""

    def score_items(self, items: np.ndarray) -> np.ndarray:
        """(len(items), n_items) float32 scores of every item for each query item index."""
        raise NotImplementedError(f"{self.recipe} models do not answer related-items queries")

    # Persistence: named tables (pandas) + a JSON-able dict, written as Parquet by the solution version.
    @abstractmethod
    def tables(self) -> dict[str, pd.DataFrame]:
        """The model's state as named tables; ``items`` (ITEM_ID, POPULARITY, ...) always among them."""

    @classmethod
    @abstractmethod
    def from_tables(cls, tables: dict[str, pd.DataFrame], settings: RecipeSettings) -> "Model":
        """Rebuild a model from :meth:`tables` output."""

    def items_table(self, **columns) -> pd.DataFrame:
        return pd.DataFrame({"ITEM_ID": self.item_ids, "POPULARITY": self.popularity, **columns})


class Recipe(ABC):
    """An estimator: settings in, :meth:`fit` -> :class:`Model`."""

    name: str
    model_class: type[Model]

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


def to_spark(spark: SparkSession, frame: pd.DataFrame) -> DataFrame:
    """A pandas frame (array cells as numpy arrays) as a Spark DataFrame, through Arrow."""
    return spark.createDataFrame(pa.Table.from_pandas(frame, preserve_index=False))


def id_index(spark: SparkSession, ids: np.ndarray, key: str, position: str) -> DataFrame:
    """``ids`` (the dense index order) as a small DataFrame of ``key`` -> ``position`` (int, 0..n-1) to join on.

    >>> id_index(spark, np.array(["a", "b"], dtype=object), "ITEM_ID", "ITEM_IDX")   # doctest: +SKIP
    DataFrame[ITEM_ID: string, ITEM_IDX: int]
    """
    return to_spark(spark, pd.DataFrame({key: ids, position: np.arange(len(ids), dtype=np.int32)}))


def to_pandas(frame: DataFrame) -> pd.DataFrame:
    """A (small) Spark DataFrame collected through Arrow, whatever the session's Arrow setting."""
    return frame.toArrow().to_pandas()
