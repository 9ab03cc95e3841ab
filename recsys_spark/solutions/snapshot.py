"""The snapshot a solution trains on: the interactions at pinned Delta table versions, filtered and weighted
by the solution's event settings, and the counts its recipe's pre-fit checks read.

>>> interactions = weighted_interactions(warehouse, config.solution("top-picks"), version=3)   # doctest: +SKIP
>>> data_counts(interactions)                                                                 # doctest: +SKIP
{'interactions': 143270, 'users': 5000, 'users_with_two': 4990, 'items': 2000}
"""

from __future__ import annotations

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


def data_counts(interactions: DataFrame) -> dict[str, int]:
    """interactions, users, items, and users with at least two interactions, in one pass."""
    per_user = interactions.groupBy("USER_ID").agg(F.count(F.lit(1)).alias("N"))
    row = per_user.agg(F.sum("N").alias("interactions"), F.count(F.lit(1)).alias("users"),
                       F.sum(F.when(F.col("N") >= 2, 1).otherwise(0)).alias("users_with_two")).first()
    items = interactions.select("ITEM_ID").distinct().count()
    return {"interactions": int(row["interactions"] or 0), "users": int(row["users"] or 0),
            "users_with_two": int(row["users_with_two"] or 0), "items": items}


def catalog_size(warehouse: Warehouse, interactions: DataFrame, versions: dict[str, int]) -> int:
    """Distinct items in the interactions and the items dataset (the service's coverage denominator)."""
    items = interactions.select("ITEM_ID")
    if "items" in versions:
        items = items.union(warehouse.read("items", versions["items"]).select("ITEM_ID"))
    return items.distinct().count()
