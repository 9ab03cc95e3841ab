"""The one interface every fitted model shares (implicit's shape): plain numpy state that scores a block of
users, or a block of query items, against its whole catalog as one (rows, items) float32 matrix.

A model never needs the training data once fitted; it saves to and loads from Arrow tables (a solution
version writes them as Parquet), so the batch job's Spark tasks and the real-time server score with the
same object.

>>> import numpy as np
>>> from recsys_spark.core.models.ranked import RankedItemsModel
>>> model = RankedItemsModel(np.array(["a", "b"], dtype=object), np.array([1.0, 3.0]))
>>> model.score_users(UserBlock.from_lists([[0], []])).tolist()
[[1.0, 3.0], [1.0, 3.0]]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys_spark.core.settings import RecipeSettings


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
        """A block from Python lists (tests and small calls); weights default to 1, timestamps to 0.

        >>> UserBlock.from_lists([[3, 1], [2]]).indptr.tolist()
        [0, 2, 3]
        """
        lengths = np.array([len(x) for x in items], dtype=np.int64)
        total = int(lengths.sum())

        def flat(lists, dtype, fill):
            if lists is None or not total:
                return np.full(total, fill, dtype=dtype)
            return np.concatenate([np.asarray(x, dtype=dtype) for x in lists])

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
    ``popularity`` (distinct users per item) ranks items for users the model cannot personalise;
    ``users`` is the table of per-user state (USER_ID, FACTORS) for recipes that keep one, else None: it is
    kept out of the pickled state a Spark job broadcasts (the batch job shuffles it with the histories)."""

    recipe: str
    users: pa.Table | None = None
    #: How many of a user's most recent interactions the model reads (see :meth:`UserBlock.recent`).
    history_limit = 500

    def __init__(self, item_ids: np.ndarray, popularity: np.ndarray):
        self.item_ids, self.popularity = item_ids, np.asarray(popularity).astype(np.float32)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @cached_property
    def catalog_index(self) -> pd.Index:
        """Item ID -> catalog position (``get_indexer`` gives -1 for unknown IDs)."""
        return pd.Index(self.item_ids)

    @cached_property
    def _catalog_dict(self) -> dict:
        return {item: i for i, item in enumerate(self.item_ids)}

    def positions(self, ids) -> np.ndarray:
        """Each ID's catalog position, -1 for IDs the catalog does not have. A few IDs (one real-time
        request) are looked up in a dict, many (a batch partition) by pandas' vectorised index.

        >>> from recsys_spark.core.models.ranked import RankedItemsModel
        >>> RankedItemsModel(np.array(["a", "b"], dtype=object), np.ones(2)).positions(["b", "zz"]).tolist()
        [1, -1]
        """
        if len(ids) <= 64:
            found = self._catalog_dict
            return np.array([found.get(x, -1) for x in ids], dtype=np.int64)
        return self.catalog_index.get_indexer(ids)

    @cached_property
    def catalog_ids(self) -> pa.Array:
        """The catalog as an Arrow array (taking from it builds result lists without a Python string each)."""
        return pa.array(self.item_ids, pa.string())

    #: Attributes left out when the model is pickled: caches are rebuilt where it lands, per-user state
    #: travels separately.
    transient = ("catalog_index", "_catalog_dict", "catalog_ids", "users")

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in self.transient}

    @abstractmethod
    def score_users(self, block: UserBlock) -> np.ndarray:
        """(block.rows, n_items) float32 scores; higher is better."""

    def score_items(self, items: np.ndarray) -> np.ndarray:
        """(len(items), n_items) float32 scores of every item for each query item index."""
        raise NotImplementedError(f"{self.recipe} models do not answer related-items queries")

    # Persistence: named Arrow tables, written as Parquet by the solution version.
    @abstractmethod
    def tables(self) -> dict[str, pa.Table]:
        """The model's state as named tables; ``items`` (ITEM_ID, POPULARITY, ...) always among them."""

    @classmethod
    @abstractmethod
    def from_tables(cls, tables: dict[str, pa.Table], settings: RecipeSettings) -> "Model":
        """Rebuild a model from :meth:`tables` output (``users`` may be left out)."""

    def items_table(self, **columns) -> pa.Table:
        return pa.table({"ITEM_ID": pa.array(self.item_ids, pa.string()),
                         "POPULARITY": pa.array(self.popularity, pa.float32()), **columns})


def vectors(matrix: np.ndarray) -> pa.Array:
    """A (rows, k) float32 matrix as an Arrow list<float> column (one vector per row).

    >>> vectors(np.eye(2, dtype=np.float32)).to_pylist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    rows, k = matrix.shape
    return pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32) * k), matrix.reshape(-1))


def matrix_of(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow list<float> column of equal-length vectors as a (rows, k) float32 matrix.

    >>> matrix_of(vectors(np.ones((3, 2), dtype=np.float32))).shape
    (3, 2)
    """
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(len(column), -1)


def id_array(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A string column as the object array models keep their IDs in."""
    return column.to_numpy(zero_copy_only=False).astype(object)
