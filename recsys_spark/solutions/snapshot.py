"""The snapshot a solution trains on: the interactions at pinned Delta table versions, filtered and weighted
by the solution's event settings, and the counts its recipe's pre-fit checks read.

>>> interactions = weighted_interactions(warehouse, config.solution("top-picks"), version=3)   # doctest: +SKIP
>>> data_counts(interactions)                                                                 # doctest: +SKIP
{'interactions': 143270, 'users': 5000, 'users_with_two': 4990, 'items': 2000, 'catalog': 2000}
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.config import Solution
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.errors import UserError


def weighted_interactions(warehouse: Warehouse, solution: Solution, version: int | None) -> DataFrame:
    """The interactions a solution trains on, at a pinned table version: USER_ID, ITEM_ID, TIMESTAMP,
    EVENT_TYPE, WEIGHT. Event types outside ``events.types`` are dropped, the rest weighted by it; events
    below ``events.value_threshold`` (or without a value) are dropped. Unknown event types in the weights
    are an error naming the types the data has."""
    frame = warehouse.read("interactions", version)
    events = solution.events
    if events.value_threshold is not None:
        frame = frame.where(F.col("EVENT_VALUE") >= events.value_threshold)
    if events.types is None:
        return frame.select("USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", F.lit(1.0).alias("WEIGHT"))
    present = {r[0] for r in warehouse.read("interactions", version).select("EVENT_TYPE").distinct().collect()}
    unknown = sorted(set(events.types) - present)
    if unknown:
        raise UserError(f"solution {solution.name!r}: events.types names event type(s) {', '.join(unknown)} that "
                        f"the interactions do not have; their event types: {', '.join(sorted(present)) or 'none'}")
    weight = F.create_map(*[x for t, w in sorted(events.types.items()) for x in (F.lit(t), F.lit(float(w)))])
    return (frame.where(F.col("EVENT_TYPE").isin(list(events.types)))
            .select("USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", weight[F.col("EVENT_TYPE")].alias("WEIGHT"))
            .where(F.col("WEIGHT") > 0))


def data_counts(interactions: DataFrame, items: DataFrame | None = None) -> dict[str, int]:
    """interactions, users, users with at least two interactions, items, and ``catalog``: distinct items in
    the interactions and in ``items`` (the items dataset, the service's coverage denominator), in one Spark
    job (one aggregation of user and item keys: a job costs more than these rows here)."""
    keys = [interactions.select(F.lit(0).alias("KIND"), F.col("USER_ID").alias("ID"), F.lit(1).alias("SEEN")),
            interactions.select(F.lit(1).alias("KIND"), F.col("ITEM_ID").alias("ID"), F.lit(1).alias("SEEN"))]
    if items is not None:
        keys.append(items.select(F.lit(1).alias("KIND"), F.col("ITEM_ID").alias("ID"), F.lit(0).alias("SEEN")))
    per_key = reduce(DataFrame.unionByName, keys).groupBy("KIND", "ID").agg(
        F.sum("SEEN").alias("N"))
    user, item = F.col("KIND") == 0, F.col("KIND") == 1
    row = per_key.agg(F.sum(F.when(user, F.col("N"))).alias("interactions"), F.count_if(user).alias("users"),
                      F.count_if(user & (F.col("N") >= 2)).alias("users_with_two"),
                      F.count_if(item & (F.col("N") > 0)).alias("items"), F.count_if(item).alias("catalog")).first()
    return {name: int(row[name] or 0) for name in ("interactions", "users", "users_with_two", "items", "catalog")}


def catalog_items(warehouse: Warehouse, versions: dict[str, int]) -> DataFrame | None:
    """The items dataset's ITEM_ID at its pinned version (None without one), for :func:`data_counts`."""
    return warehouse.read("items", versions["items"]).select("ITEM_ID") if "items" in versions else None
