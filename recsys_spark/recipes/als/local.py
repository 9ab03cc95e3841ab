"""The ``local`` ALS engine: the interactions are collected to the driver as CSR matrices of users and of
items (8 bytes per interaction per side; under 100 at the peak of building them) and every half-iteration
solves all rows there, one thread per driver core. Below a few million interactions a Spark job per
half-iteration (~0.3 s of scheduling, broadcast and collect here) costs more than the arithmetic it spreads.
"""

from __future__ import annotations

import logging
import os

from pyspark.sql import functions as F

from recsys_spark.core.kernels.als import gram, solve_in_threads
from recsys_spark.core.settings import FactorSettings
from recsys_spark.core.models.factors import user_table
from recsys_spark.recipes.als.common import initial_items, initial_users, sorted_codes
from recsys_spark.recipes.fitting import TrainingSet

log = logging.getLogger(__name__)


def fit(data: TrainingSet, s: FactorSettings):
    """(the users table: USER_ID, FACTORS; item factors)."""
    user_ids, by_user = _confidence_matrix(data, s.alpha)
    by_item = by_user.tocsc()  # the same entries grouped by item, users ascending within each
    threads = _driver_cores(data.spark)
    users, items = initial_users(user_ids, s), initial_items(len(data.item_ids), s)
    for iteration in range(s.iterations):
        users = solve_in_threads(by_user.indptr, by_user.indices, by_user.data, users, items,
                                 gram(items, s.regularization), s.cg_steps, threads)
        items = solve_in_threads(by_item.indptr, by_item.indices, by_item.data, items, users,
                                 gram(users, s.regularization), s.cg_steps, threads)
        log.debug("ALS iteration %d of %d done", iteration + 1, s.iterations)
    return user_table(user_ids, users), items


def _confidence_matrix(data: TrainingSet, alpha: float):
    """(user IDs sorted, (users, items) scipy CSR of 1 + alpha x summed weight), built on the driver."""
    from scipy import sparse

    table = data.interactions.select("USER_ID", "ITEM_IDX", F.col("WEIGHT").cast("float").alias("WEIGHT")).toArrow()
    names, rows = sorted_codes(table.column("USER_ID").combine_chunks())
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
