"""Scoring users with a model inside Spark tasks: histories in, top-k item IDs and scores out.

The model is broadcast once; each task cuts its rows into blocks of ``block_rows`` users, scores a block
as one (users, items) float32 matrix, sets excluded items to minus infinity and selects the top k with
:func:`~recsys_spark.inference.topk.top_k`. There is no per-user Python loop and no users x items join.

Input columns (:func:`user_histories` builds them from interactions): ``USER_ID``; ``H_ITEMS`` (array of
item indexes into the model's catalog), ``H_WEIGHTS`` (array of event weights), ``H_TIMES`` (array of epoch
seconds), null or empty for users without history; optional ``FACTORS`` (array of floats, stored user
factors) and ``KNOWN`` (whether to use them instead of solving from the history).

>>> recs = recommend_users(model, user_histories(interactions, model), k=25)   # doctest: +SKIP
>>> recs.columns
['USER_ID', 'ITEMS', 'SCORES', 'FALLBACK']
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.inference.topk import top_k
from recsys_spark.recipes.base import Model, UserBlock, to_spark

OUTPUT_SCHEMA = "USER_ID string, ITEMS array<string>, SCORES array<float>, FALLBACK boolean"
BLOCK_ROWS = 256  # 256 users x 20,000 items of float32 (20 MB) stay in cache between product and selection


def item_index(spark, model: Model) -> DataFrame:
    """ITEM_ID -> ITEM_IDX of the model's catalog, small enough to broadcast."""
    return to_spark(spark, pd.DataFrame({"ITEM_ID": model.item_ids, "ITEM_IDX": np.arange(model.n_items, dtype=np.int32)}))


def user_histories(interactions: DataFrame, model: Model, users: DataFrame | None = None) -> DataFrame:
    """Per user, the interactions (USER_ID, ITEM_ID, TIMESTAMP, WEIGHT) on items of the model's catalog as
    H_ITEMS / H_WEIGHTS / H_TIMES arrays (in no particular order). ``users`` (USER_ID): score exactly these users
    (those without history get empty arrays); default: every user in ``interactions``."""
    index = F.broadcast(item_index(interactions.sparkSession, model))
    entries = interactions.join(index, "ITEM_ID").select(
        "USER_ID", F.struct("TIMESTAMP", "ITEM_IDX", F.col("WEIGHT").cast("float").alias("WEIGHT")).alias("E"))
    grouped = entries.groupBy("USER_ID").agg(F.collect_list("E").alias("H"))
    if users is not None:
        grouped = users.select("USER_ID").distinct().join(grouped, "USER_ID", "left")
    h = F.coalesce(F.col("H"), F.array().cast("array<struct<TIMESTAMP:bigint,ITEM_IDX:int,WEIGHT:float>>"))
    return grouped.select("USER_ID", h.getField("ITEM_IDX").alias("H_ITEMS"),
                          h.getField("WEIGHT").alias("H_WEIGHTS"), h.getField("TIMESTAMP").alias("H_TIMES"))


def with_stored_factors(users: DataFrame, model: Model) -> DataFrame:
    """Add FACTORS / KNOWN from the model's trained user factors (recipes that have them)."""
    table = getattr(model, "users", None)
    if table is None:
        return users
    factors = to_spark(users.sparkSession, table)
    return (users.join(factors, "USER_ID", "left")
            .withColumn("KNOWN", F.col("FACTORS").isNotNull()))


def recommend_users(model: Model, users: DataFrame, k: int, exclude_seen: bool = True,
                    block_rows: int = BLOCK_ROWS) -> DataFrame:
    """Top ``k`` items per user row: USER_ID, ITEMS (item IDs, best first), SCORES, FALLBACK (true when the
    user had no history and no stored factors, so popular items were given)."""
    shared = users.sparkSession.sparkContext.broadcast(model)
    has_factors = "FACTORS" in users.columns

    def score(batches):
        m: Model = shared.value
        for batch in _reblock(batches, block_rows):
            yield _score_block(m, batch, k, exclude_seen, has_factors)

    columns = ["USER_ID", "H_ITEMS", "H_WEIGHTS", "H_TIMES"] + (["FACTORS", "KNOWN"] if has_factors else [])
    return users.select(*columns).mapInArrow(score, OUTPUT_SCHEMA)


def _reblock(batches, rows: int):
    """Arrow batches re-cut to at most ``rows`` rows each."""
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def _flat(column: pa.ListArray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values) of a list column; null lists are empty."""
    column = column.fill_null([]) if column.null_count else column
    offsets = column.offsets.to_numpy().astype(np.int64)
    values = column.values.to_numpy(zero_copy_only=False).astype(dtype)
    return offsets - offsets[0], values[offsets[0]:offsets[-1]]


def block_from_arrow(batch: pa.RecordBatch, has_factors: bool) -> UserBlock:
    indptr, items = _flat(batch.column("H_ITEMS"), np.int64)
    _, weights = _flat(batch.column("H_WEIGHTS"), np.float32)
    _, times = _flat(batch.column("H_TIMES"), np.int64)
    block = UserBlock(indptr, items, weights, times)
    if has_factors:
        known = batch.column("KNOWN").fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
        f_offsets, f_values = _flat(batch.column("FACTORS"), np.float32)
        dims = np.diff(f_offsets)
        k = int(dims.max(initial=0))
        factors = np.zeros((batch.num_rows, k), dtype=np.float32)
        full = np.flatnonzero(dims == k) if k else np.array([], dtype=np.int64)
        factors[full] = f_values[f_offsets[full][:, None] + np.arange(k)]
        block.factors, block.known = factors, known & (dims == k) & (k > 0)
    return block


def _score_block(model: Model, batch: pa.RecordBatch, k: int, exclude_seen: bool, has_factors: bool):
    block = block_from_arrow(batch, has_factors)
    rows = block.rows
    has_history = np.diff(block.indptr) > 0
    cold = ~has_history if block.known is None else ~has_history & ~block.known
    scores = np.empty((rows, model.n_items), dtype=np.float32)
    if (~cold).any():
        scores[~cold] = model.score_users(block.select(~cold))
    if cold.any():
        scores[cold] = model.popular_scores(int(cold.sum()))
    if exclude_seen and len(block.items):
        valid = (block.items >= 0) & (block.items < model.n_items)
        scores[block.row_ids()[valid], block.items[valid]] = -np.inf
    return recommendations_batch(model, batch.column("USER_ID"), scores, k, cold)


def recommendations_batch(model: Model, ids: pa.Array, scores: np.ndarray, k: int, fallback: np.ndarray):
    """Top-k of ``scores`` as an Arrow batch of OUTPUT_SCHEMA (excluded items cut off each row)."""
    idx, vals = top_k(scores, k)
    keep = np.isfinite(vals)
    counts = keep.sum(axis=1)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    items = pa.ListArray.from_arrays(offsets, pa.array(model.item_ids[idx[keep]], pa.string()))
    values = pa.ListArray.from_arrays(offsets, pa.array(vals[keep], pa.float32()))
    return pa.record_batch([ids, items, values, pa.array(fallback)], names=["USER_ID", "ITEMS", "SCORES", "FALLBACK"])
