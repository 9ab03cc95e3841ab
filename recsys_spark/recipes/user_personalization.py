"""``user-personalization``: implicit-feedback ALS trained on Spark, scored as user x item factor products.

Engines (setting ``engine``; ``auto``, the default, picks ``local`` up to ``local_max_interactions``
training interactions and ``blocked`` above, see :func:`choose_engine`):

* ``local``: the interactions are collected to the driver as CSR matrices of users and of items (8 bytes
  per interaction per side; under 100 at the peak of building them) and every half-iteration solves all
  rows there, one thread per driver core.
  Below a few million interactions a Spark job per half-iteration (~0.3 s of scheduling, broadcast and
  collect here) costs more than the arithmetic it spreads.
* ``blocked``: the same solver in Spark tasks. The interactions are cut once into CSR blocks of users and
  of items, cached in Spark; each half-iteration broadcasts the other side's factors and solves every block
  in its own task with a few warm-started conjugate-gradient steps (:mod:`.als_solver`). Cost per
  iteration is O(interactions x factors); both factor matrices pass through the driver, which bounds the
  model at (users + items) x factors x 4 bytes (256 MB for a million users at 64 factors).
* ``mllib``: Spark MLlib's ALS (block counts from the cluster's cores, a checkpoint folder so long runs
  do not overflow the stack); slower, but the factors never leave the executors while training.

``local`` and ``blocked`` start from the same random factors (drawn in sorted user-ID order) and solve the
same equations, so they give the same model up to float rounding.

Users whose interactions are newer than the model, or who are not in it, are folded in at scoring time:
their factors are solved from the item factors and their history, exactly as in training.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import TaskContext
from pyspark.sql import functions as F

from recsys_spark.recipes.als_solver import gram, solve_block, solve_in_threads
from recsys_spark.recipes.base import Model, Recipe, TrainingSet, UserBlock, id_index, pack, to_pandas, unpack
from recsys_spark.recipes.settings import FactorSettings

log = logging.getLogger(__name__)
FOLD_IN_STEPS = 12  # conjugate gradient converges in at most `factors` steps; 12 is within 1e-3 at rank 64


class FactorModel(Model):
    """Item factors (items, k) + the confidence settings to fold users in; ``users`` (USER_ID, FACTORS)
    holds the trained users' factors (kept out of the pickled, broadcast state)."""

    recipe = "user-personalization"

    def __init__(self, item_ids, popularity, item_factors: np.ndarray, settings: FactorSettings,
                 users: pd.DataFrame | None = None):
        super().__init__(item_ids, popularity)
        self.item_factors = item_factors.astype(np.float32)
        self.settings = settings
        self.gram = gram(self.item_factors, settings.regularization)
        self.users = users

    @property
    def history_limit(self) -> int:
        return self.settings.fold_in_max_history

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "users"} | {"users": None}

    def user_vectors(self, block: UserBlock) -> np.ndarray:
        """(rows, k): stored factors where ``block.known``, else solved from the row's history."""
        k = self.item_factors.shape[1]
        out = np.zeros((block.rows, k), dtype=np.float32)
        known = block.known if block.known is not None else np.zeros(block.rows, dtype=bool)
        if block.factors is not None and known.any():
            out[known] = block.factors[known]
        if not known.all():
            out[~known] = self.fold_in(block, ~known)
        return out

    def fold_in(self, block: UserBlock, rows: np.ndarray) -> np.ndarray:
        block = block.recent(self.history_limit)
        history = block.matrix(block.weights, self.n_items)[np.flatnonzero(rows)]
        conf = 1.0 + self.settings.alpha * history.data
        x0 = np.zeros((history.shape[0], self.item_factors.shape[1]), dtype=np.float32)
        return solve_block(history.indptr, history.indices, conf, x0, self.item_factors, self.gram, FOLD_IN_STEPS)

    def score_users(self, block: UserBlock) -> np.ndarray:
        return self.user_vectors(block) @ self.item_factors.T

    def tables(self) -> dict[str, pd.DataFrame]:
        tables = {"items": self.items_table(FACTORS=list(self.item_factors))}
        if self.users is not None:
            tables["users"] = self.users
        return tables

    @classmethod
    def from_tables(cls, tables, settings):
        items = tables["items"]
        return cls(items["ITEM_ID"].to_numpy(dtype=object), items["POPULARITY"].to_numpy(),
                   np.stack(items["FACTORS"].to_numpy()).astype(np.float32), settings, tables.get("users"))


class UserPersonalization(Recipe):
    name = "user-personalization"
    model_class = FactorModel

    def fit(self, data: TrainingSet) -> FactorModel:
        s: FactorSettings = self.settings
        engine = choose_engine(s, data.rows, dict(data.spark.sparkContext.getConf().getAll()))
        log.info("user-personalization: %s engine, %d interactions", engine, data.rows)
        fit = {"local": _fit_local, "blocked": _fit_blocked, "mllib": _fit_mllib}[engine]
        user_ids, user_factors, item_factors = fit(data, s)
        users = pd.DataFrame({"USER_ID": user_ids, "FACTORS": list(user_factors)})
        return FactorModel(data.item_ids, data.popularity, item_factors, s, users)


LOCAL_BYTES_PER_INTERACTION = 100  # the local engine's peak driver memory per interaction (measured ~65)


def choose_engine(s: FactorSettings, rows: int, conf: dict[str, str]) -> str:
    """The engine to train ``rows`` interactions with: ``s.engine`` unless it is ``auto``, which means
    ``local`` up to ``s.local_max_interactions``, else ``blocked``. In cluster deploy mode (YARN,
    Kubernetes) the driver's Python memory must fit in its container's non-heap share
    (``spark.driver.memoryOverhead``), so there ``local`` also needs its peak under half of that.

    >>> choose_engine(FactorSettings(), 3_000_000, {"spark.submit.deployMode": "cluster"})
    'blocked'
    """
    if s.engine != "auto":
        return s.engine
    if rows > s.local_max_interactions:
        return "blocked"
    if conf.get("spark.submit.deployMode") == "cluster":
        overhead = conf.get("spark.driver.memoryOverhead")
        budget = (_mebibytes(overhead) if overhead else max(384, float(conf.get(
            "spark.driver.memoryOverheadFactor", 0.1)) * _mebibytes(conf.get("spark.driver.memory", "1g")))) * 2**20
        if rows * LOCAL_BYTES_PER_INTERACTION > budget / 2:
            return "blocked"
    return "local"


def _mebibytes(size: str) -> float:
    """A Spark memory setting ("512", "512m", "4g", "1t"; no unit = MiB) in MiB."""
    size = size.strip().lower().removesuffix("b")
    scale = {"k": 2**-10, "m": 1, "g": 2**10, "t": 2**20}
    return float(size[:-1]) * scale[size[-1]] if size[-1:] in scale else float(size)


@dataclass
class Blocks:
    """CSR blocks cached in Spark as an RDD of packed bytes (they ship to the Python workers ~3x faster
    than a binary column through Arrow: 0.2 s against 0.6 s per pass, measured). A block's row ``r`` is
    global row ``offsets[part] + keys[r]``."""

    rdd: object
    offsets: np.ndarray


def _initial_factors(user_ids: np.ndarray, n_items: int, s: FactorSettings) -> tuple[np.ndarray, np.ndarray]:
    """Small random (users, k) and (items, k) factors; users' rows drawn in sorted-ID order, so every engine
    starts each user from the same vector whatever order it numbers them in."""
    rng = np.random.default_rng(s.seed)
    drawn = rng.random((len(user_ids), s.factors), dtype=np.float32) * 0.01
    items = rng.random((n_items, s.factors), dtype=np.float32) * 0.01
    users = np.empty_like(drawn)
    users[pc.sort_indices(pa.array(user_ids, pa.string())).to_numpy()] = drawn
    return users, items


def _fit_local(data: TrainingSet, s: FactorSettings):
    user_ids, by_user = _confidence_matrix(data, s.alpha)
    by_item = by_user.tocsc()  # the same entries grouped by item, users ascending within each
    threads = _driver_cores(data.spark)
    users, items = _initial_factors(user_ids, len(data.item_ids), s)
    for iteration in range(s.iterations):
        users = solve_in_threads(by_user.indptr, by_user.indices, by_user.data, users, items,
                                 gram(items, s.regularization), s.cg_steps, threads)
        items = solve_in_threads(by_item.indptr, by_item.indices, by_item.data, items, users,
                                 gram(users, s.regularization), s.cg_steps, threads)
        log.debug("ALS iteration %d of %d done", iteration + 1, s.iterations)
    return user_ids, users, items


def _confidence_matrix(data: TrainingSet, alpha: float):
    """(user IDs sorted, (users, items) scipy CSR of 1 + alpha x summed weight), built on the driver."""
    from scipy import sparse

    table = data.interactions.select("USER_ID", "ITEM_IDX", F.col("WEIGHT").cast("float").alias("WEIGHT")).toArrow()
    names, rows = _sorted_codes(table.column("USER_ID").combine_chunks())
    matrix = sparse.csr_matrix((table.column("WEIGHT").to_numpy(), (rows, table.column("ITEM_IDX").to_numpy())),
                               shape=(len(names), len(data.item_ids)))
    matrix.sum_duplicates()  # summed weights per (user, item), columns ascending
    matrix.data = 1.0 + alpha * matrix.data
    return names.to_numpy(zero_copy_only=False).astype(object), matrix


def _driver_cores(spark) -> int:
    """Threads for the local engine: ``spark.driver.cores`` when set, else the cores this process may use."""
    configured = spark.sparkContext.getConf().get("spark.driver.cores")
    if configured:
        return int(configured)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # not on macOS


def _sorted_codes(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(distinct values sorted, each value's position among them): the dense numbering of string IDs."""
    encoded = values.dictionary_encode()
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return encoded.dictionary.take(pa.array(order)), rank[encoded.indices.to_numpy()]


def _fit_blocked(data: TrainingSet, s: FactorSettings):
    spark = data.spark
    # One task per core (a Spark job costs 0.1-0.2 s per wave of tasks here), blocks of at most ~2 million
    # events (tens of MB in a Python worker).
    parts = max(spark.sparkContext.defaultParallelism, -(-data.rows // 2_000_000))
    user_ids, by_user, by_item = _blocks(data, parts, s.alpha)
    users, items = _initial_factors(user_ids, len(data.item_ids), s)
    try:
        for iteration in range(s.iterations):
            users = _half_step(spark, by_user, users, items, s)
            items = _half_step(spark, by_item, items, users, s)
            log.debug("ALS iteration %d of %d done", iteration + 1, s.iterations)
    finally:
        by_user.rdd.unpersist()
        by_item.rdd.unpersist()
    return user_ids, users, items


def _blocks(data: TrainingSet, parts: int, alpha: float):
    """(user IDs, user blocks, item blocks): the confidences as CSR blocks of users and of items. One
    shuffle of the events by user builds the user blocks (the events of a (user, item) pair summed there,
    each partition's users numbered locally in sorted order); the item blocks are cut from them by a
    shuffle of only parts x parts packed pieces."""
    def by_user(batches):
        table = pa.Table.from_batches(list(batches))
        if table.num_rows == 0:
            return
        names, rows = _sorted_codes(table.column("USER_ID").combine_chunks())  # sorted: reproducible numbering
        weights = table.column("WEIGHT").to_numpy().astype(np.float32)
        keys, indptr, cols, summed = _csr(rows, table.column("ITEM_IDX").to_numpy(), weights)
        yield pa.record_batch([pa.array([pack(part=np.int64(TaskContext.get().partitionId()), keys=keys,
                                              indptr=indptr, cols=cols, conf=1.0 + alpha * summed,
                                              **_pack_strings(names))], pa.binary())], names=["BLOCK"])

    events = data.interactions.select("USER_ID", "ITEM_IDX", F.col("WEIGHT").cast("float").alias("WEIGHT"))
    users = (events.repartition(parts, "USER_ID").mapInArrow(by_user, "BLOCK binary")
             .rdd.map(lambda r: bytes(r.BLOCK)).cache())
    def names(blob: bytes) -> tuple[int, np.ndarray]:
        b = unpack(blob)
        return int(b["part"]), _unpack_strings(b)

    named = sorted(users.map(names).collect())
    user_ids = np.concatenate([ids for _, ids in named]) if named else np.array([], dtype=object)
    # Partition p's users are numbered from offsets[p] on, in their sorted order.
    offsets = np.zeros(parts, dtype=np.int64)
    offsets[[p for p, _ in named]] = np.cumsum([0] + [len(ids) for _, ids in named])[:-1]

    def pieces(blob: bytes):
        b = unpack(blob)
        rows = np.repeat(b["keys"] + offsets[b["part"]], np.diff(b["indptr"]))
        target = b["cols"] % parts
        for t in np.unique(target):
            mine = target == t
            yield int(t), pack(rows=b["cols"][mine], cols=rows[mine], conf=b["conf"][mine])

    def by_item(pairs):
        got = [unpack(blob) for _, blob in pairs]
        if got:
            keys, indptr, cols, conf = _csr(*(np.concatenate([g[k] for g in got]) for k in ("rows", "cols", "conf")))
            yield pack(keys=keys, indptr=indptr, cols=cols, conf=conf, part=np.int64(0))

    items = users.flatMap(pieces).partitionBy(parts, lambda t: t).mapPartitions(by_item).cache()
    items.count()
    return user_ids, Blocks(users, offsets), Blocks(items, np.zeros(1, dtype=np.int64))


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


def _unpack_strings(arrays: dict[str, np.ndarray]) -> np.ndarray:
    offsets, data = arrays["id_offsets"], arrays["id_bytes"]
    values = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data))
    return values.to_numpy(zero_copy_only=False).astype(object)


def _half_step(spark, blocks: Blocks, own: np.ndarray, other: np.ndarray, s: FactorSettings) -> np.ndarray:
    """New factors for every row of ``blocks``, the other side's factors broadcast; returns ``own`` with the
    solved rows replaced."""
    shared = spark.sparkContext.broadcast((own, other, gram(other, s.regularization)))
    steps, offsets = s.cg_steps, blocks.offsets

    def solve(blob: bytes) -> bytes:
        own_f, other_f, gram_reg = shared.value
        b = unpack(blob)
        keys = b["keys"] + offsets[b["part"]]
        return pack(keys=keys, factors=solve_block(b["indptr"], b["cols"], b["conf"], own_f[keys], other_f, gram_reg,
                                                   steps))

    try:
        out = own.copy()
        for blob in blocks.rdd.map(solve).collect():
            part = unpack(blob)
            out[part["keys"]] = part["factors"]
        return out
    finally:
        shared.unpersist()


def _fit_mllib(data: TrainingSet, s: FactorSettings):
    from pyspark.ml.recommendation import ALS

    spark = data.spark
    user_ids = np.sort(to_pandas(data.interactions.select("USER_ID").distinct())["USER_ID"].to_numpy(dtype=object))
    index = id_index(spark, user_ids, "USER_ID", "USER_IDX")
    events = data.interactions.join(F.broadcast(index), "USER_ID").select(
        "USER_IDX", "ITEM_IDX", F.col("WEIGHT").cast("float").alias("WEIGHT"))
    n_users, n_items = len(user_ids), len(data.item_ids)
    cores = spark.sparkContext.defaultParallelism
    sc = spark.sparkContext
    if sc.getCheckpointDir() is None and data.checkpoint_dir:  # long lineages overflow the stack otherwise
        sc.setCheckpointDir(data.checkpoint_dir)
    als = ALS(rank=s.factors, maxIter=s.iterations, regParam=s.regularization, alpha=s.alpha, implicitPrefs=True,
              userCol="USER_IDX", itemCol="ITEM_IDX", ratingCol="WEIGHT", numUserBlocks=cores, numItemBlocks=cores,
              checkpointInterval=5, seed=s.seed, intermediateStorageLevel="MEMORY_AND_DISK")
    # MLlib builds confidence as 1 + alpha * rating: the rating is the (user, item)'s summed event weight.
    model = als.fit(events.groupBy("USER_IDX", "ITEM_IDX").agg(F.sum("WEIGHT").alias("WEIGHT")))
    users = np.zeros((n_users, s.factors), dtype=np.float32)
    items = np.zeros((n_items, s.factors), dtype=np.float32)
    for target, frame in ((users, model.userFactors), (items, model.itemFactors)):
        pdf = to_pandas(frame)
        if len(pdf):
            target[pdf["id"].to_numpy()] = np.stack(pdf["features"].to_numpy())
    return user_ids, users, items


class RankingModel(FactorModel):
    """A user-personalization model that reorders a given item list (the service's personalized-ranking)."""

    recipe = "personalized-ranking"


class PersonalizedRanking(UserPersonalization):
    name = "personalized-ranking"
    model_class = RankingModel

    def fit(self, data: TrainingSet) -> RankingModel:
        model = super().fit(data)
        return RankingModel(model.item_ids, model.popularity, model.item_factors, model.settings, model.users)
