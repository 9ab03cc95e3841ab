"""The ``blocked`` ALS engine: the same solver in Spark tasks, the user factors never on the driver.

The interactions are cut once into blocks of users (by a hash of USER_ID) and blocks of items (item index
modulo the item-block count), kept in Spark as CSR. Each user block also keeps its *out-blocks*: for every
item block, which of its users have interactions there (as MLlib's ALS does). One iteration is one Spark
job:

* users: the item factors (the driver holds them: items x factors) are broadcast; each task solves its user
  block from its users' previous factors, which stay beside their block in a persisted RDD of (block,
  factors), and sends each item block the factors of its out-block for it and its share of the users' Gram
  matrix (factors x factors);
* items: one shuffle brings each item block (cached) together with what the user blocks sent it (at most
  min(interactions, users x item blocks) x factors x 4 bytes in all); it solves its items, and the new item
  factors are collected.

So the driver holds the item factors and a few numbers per block, whatever the number of users, and the
trained user factors are written by the tasks that hold them: the model's ``users`` table is a DataFrame
over the last iteration's persisted partitions. Same starting factors and same equations as ``local``
(:mod:`recsys_spark.core.kernels.als`), so the same model up to float rounding.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel, TaskContext
from pyspark.sql import functions as F

from recsys_spark.core.kernels.als import cross, gram, regularized, solve_block
from recsys_spark.core.models.base import vectors
from recsys_spark.core.settings import FactorSettings
from recsys_spark.partitioning import by_key
from recsys_spark.recipes.als.common import initial_items, initial_users, sorted_codes
from recsys_spark.recipes.fitting import TrainingSet, pack, unpack

log = logging.getLogger(__name__)

# Events per user block: tens of MB in a Python worker.
USER_BLOCK_EVENTS = 2_000_000
# Events per item block, at most. Fewer, larger item blocks ship fewer copies of a user's factors (one per
# item block the user touched); 10 million events are ~120 MB of CSR plus the factors received.
ITEM_BLOCK_EVENTS = 10_000_000
# Iterations between truncations of the factors' lineage (each iteration adds a few RDDs to it).
LINEAGE_ITERATIONS = 10
KEEP = StorageLevel.MEMORY_AND_DISK


def fit(data: TrainingSet, s: FactorSettings):
    """(the users table as a Spark DataFrame: USER_ID, FACTORS; item factors)."""
    spark = data.spark
    cores = spark.sparkContext.defaultParallelism
    user_parts = max(cores, -(-data.rows // USER_BLOCK_EVENTS))
    # A multiple of the cores: 3 item blocks on 2 cores took two rounds of tasks, the second on one core.
    item_parts = cores * -(-data.rows // (ITEM_BLOCK_EVENTS * cores))
    user_blocks, item_blocks = _blocks(data, user_parts, item_parts, s.alpha)
    items = initial_items(len(data.item_ids), s)
    # (user block, its users' factors): the factors stay beside their block from one iteration to the next.
    state = user_blocks.map(lambda blob: (blob, initial_users(_names(unpack(blob)), s)))
    try:
        for iteration in range(s.iterations):
            shared = spark.sparkContext.broadcast((items, gram(items, s.regularization)))
            try:
                solved = state.map(lambda pair: _solve_users(pair, shared, s.cg_steps)).persist(KEEP)
                if iteration % LINEAGE_ITERATIONS == LINEAGE_ITERATIONS - 1:
                    solved.localCheckpoint()
                items = _solve_items(solved, item_blocks, shared, s)  # one Spark job for the whole iteration
                state.unpersist()
                state = solved
            finally:
                shared.unpersist()
            log.debug("ALS iteration %d of %d done", iteration + 1, s.iterations)
        named = state.map(_named).persist(KEEP)
        named.count()  # before the blocks it is made from go
    finally:
        for rdd in (state, user_blocks, item_blocks):
            rdd.unpersist()
    frame = spark.createDataFrame(named.map(lambda blob: (blob,)), "BLOCK binary")
    return frame.mapInArrow(_users_table, "USER_ID string, FACTORS array<float>"), items


def _blocks(data: TrainingSet, user_parts: int, item_parts: int, alpha: float):
    """(user blocks, item blocks), both persisted RDDs of packed CSR blocks, one per partition.

    A user block: ``indptr``, ``cols`` (item indices), ``conf`` for its users numbered 0..n-1 in sorted ID
    order, their IDs, and ``out_ptr`` / ``out_keys``: item block t needs the factors of users
    ``out_keys[out_ptr[t]:out_ptr[t + 1]]``. An item block: ``keys`` (its item indices), ``indptr``,
    ``cols`` (positions in the user factors it receives, concatenated in user-block order), ``conf``."""
    def by_user(batches):
        table = pa.Table.from_batches(list(batches))
        if table.num_rows == 0:
            return
        names, rows = sorted_codes(table.column("USER_ID").combine_chunks())
        weights = table.column("WEIGHT").to_numpy().astype(np.float32)
        _, indptr, cols, summed = _csr(rows, table.column("ITEM_IDX").to_numpy(), weights)  # every row has events
        owner = np.repeat(np.arange(len(names), dtype=np.int64), np.diff(indptr))
        needed = np.unique((cols % item_parts).astype(np.int64) * len(names) + owner)  # (item block, user) pairs
        yield pa.record_batch([pa.array([pack(
            part=np.int64(TaskContext.get().partitionId()), indptr=indptr, cols=cols, conf=1.0 + alpha * summed,
            out_ptr=np.searchsorted(needed // len(names), np.arange(item_parts + 1)), out_keys=needed % len(names),
            **_pack_strings(names))], pa.binary())], names=["BLOCK"])

    events = data.interactions.select("USER_ID", "ITEM_IDX", F.col("WEIGHT").cast("float").alias("WEIGHT"))
    users = (by_key(events, user_parts, "USER_ID").mapInArrow(by_user, "BLOCK binary")
             .rdd.map(lambda r: bytes(r.BLOCK)).persist(KEEP))

    def pieces(blob: bytes):
        b = unpack(blob)
        owner = np.repeat(np.arange(len(b["indptr"]) - 1), np.diff(b["indptr"]))
        target = b["cols"] % item_parts
        order = np.argsort(target, kind="stable")
        bounds = np.searchsorted(target[order], np.arange(item_parts + 1))
        ptr, keys = b["out_ptr"], b["out_keys"]
        for t in np.flatnonzero(np.diff(ptr)):
            mine = order[bounds[t]:bounds[t + 1]]
            sent = keys[ptr[t]:ptr[t + 1]]
            yield int(t), (int(b["part"]), len(sent), b["cols"][mine], np.searchsorted(sent, owner[mine]),
                           b["conf"][mine])

    def by_item(index, got):
        got = sorted((piece for _, piece in got), key=lambda piece: piece[0])
        base = np.cumsum([0] + [piece[1] for piece in got])
        parts = [np.concatenate(arrays) if got else np.zeros(0, dtype) for arrays, dtype in (
            ([p[2] for p in got], np.int32), ([p[3] + b for p, b in zip(got, base)], np.int64),
            ([p[4] for p in got], np.float32))]
        keys, indptr, cols, conf = _csr(*parts)
        yield index, pack(keys=keys, indptr=indptr, cols=cols, conf=conf, received=np.int64(base[-1]))

    items = (users.flatMap(pieces).partitionBy(item_parts, lambda t: t)
             .mapPartitionsWithIndex(by_item, preservesPartitioning=True).persist(KEEP))
    items.count()
    return users, items


def _solve_users(pair, shared, steps: int):
    blob, x0 = pair
    b = unpack(blob)
    item_factors, items_gram = shared.value
    return blob, solve_block(b["indptr"], b["cols"], b["conf"], x0, item_factors, items_gram, steps)


def _solve_items(solved, item_blocks, shared, s: FactorSettings) -> np.ndarray:
    """New item factors, in one Spark job: every user block (solved as this job's first stage) sends each
    item block the factors it needs and its share of the users' Gram matrix; one shuffle brings them
    together with the item block itself (cheaper than zipping the cached blocks with the shuffled factors:
    that takes the factors through one more pass between the JVM and Python, ~1 s an iteration at 20 million
    interactions here); every item block solves its items and the driver gathers them."""
    parts = item_blocks.getNumPartitions()

    def send(pair):
        blob, x = pair
        b = unpack(blob)
        ptr, keys = b["out_ptr"], b["out_keys"]
        share = cross(x)
        for t in range(parts):
            yield t, (int(b["part"]), x[keys[ptr[t]:ptr[t + 1]]], share)

    def solve(got):
        blob, received = None, []
        for _, value in got:
            if isinstance(value, bytes):
                blob = value
            else:
                received.append(value)
        b = unpack(blob)
        received.sort(key=lambda piece: piece[0])  # the order the block numbered its users in
        other = np.concatenate([x for _, x, _ in received] or [np.zeros((0, s.factors), np.float32)])
        assert len(other) == b["received"], "an item block received other users than it was built for"
        users_gram = regularized(sum(share for _, _, share in received), s.regularization)
        yield b["keys"], solve_block(b["indptr"], b["cols"], b["conf"], shared.value[0][b["keys"]], other,
                                     users_gram, s.cg_steps)

    out = shared.value[0].copy()
    together = item_blocks.union(solved.flatMap(send)).partitionBy(parts, lambda t: t)
    for keys, factors in together.mapPartitions(solve).collect():
        out[keys] = factors
    return out


def _named(pair) -> bytes:
    """A user block's IDs and factors, packed."""
    blob, x = pair
    b = unpack(blob)
    return pack(id_offsets=b["id_offsets"], id_bytes=b["id_bytes"], factors=x)


def _users_table(batches):
    """Named factor blocks -> Arrow batches of USER_ID, FACTORS (in the tasks that hold them)."""
    for batch in batches:
        for blob in batch.column(0).to_pylist():
            b = unpack(blob)
            yield pa.record_batch([pa.array(_names(b), pa.string()), vectors(b["factors"])],
                                  names=["USER_ID", "FACTORS"])


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray):
    """(keys, indptr, cols, values) of the non-empty rows, (row, col) duplicates summed, columns ascending."""
    from scipy import sparse

    shape = (int(rows.max(initial=-1)) + 1, int(cols.max(initial=-1)) + 1)
    m = sparse.csr_matrix((values.astype(np.float32), (rows, cols)), shape=shape)
    m.sum_duplicates()  # also sorts each row's columns (scipy's C++: ~10x faster than a lexsort here)
    keys = np.flatnonzero(np.diff(m.indptr))
    return keys, np.append(m.indptr[keys], m.nnz).astype(np.int64), m.indices, m.data


def _pack_strings(values: pa.StringArray) -> dict[str, np.ndarray]:
    """A string array as numpy arrays (its Arrow offsets and UTF-8 bytes) for :func:`pack`."""
    _, offsets, data = pa.concat_arrays([values.cast(pa.large_string())]).buffers()  # a fresh, unsliced copy
    return {"id_offsets": np.frombuffer(offsets, np.int64)[:len(values) + 1].copy(),
            "id_bytes": np.frombuffer(data, np.uint8).copy() if data is not None else np.zeros(0, np.uint8)}


def _names(arrays: dict[str, np.ndarray]) -> np.ndarray:
    offsets, data = arrays["id_offsets"], arrays["id_bytes"]
    values = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data))
    return values.to_numpy(zero_copy_only=False).astype(object)
