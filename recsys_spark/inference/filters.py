"""A job's filter on Spark: compiled once per distinct binding of its parameters into the core's plans
(:mod:`recsys_spark.core.filters.plan`), and the per-user lists those plans need, computed by the core's
:func:`~recsys_spark.core.filters.plan.user_lists` inside Spark tasks (the interactions and users shuffled
once by user), so batch, evaluation and the real-time server apply the same predicates and combination.

>>> plans = compile_plans(warehouse, "not-bought", [None], model.item_ids)       # doctest: +SKIP
>>> lists = plan_user_lists(warehouse, "not-bought", plans)                       # doctest: +SKIP
>>> lists.columns                                                                 # doctest: +SKIP
['USER_ID', 'BINDING_ID', 'include', 'exclude', 'applies']
"""

from __future__ import annotations

import json
from functools import reduce

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from recsys_spark.core.filters.binding import bind
from recsys_spark.core.filters.plan import EVENT_COLUMNS, USER_LISTS, FilterPlan, compile_plan, user_lists
from recsys_spark.core.filters.syntax import CurrentItem, Filter
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.errors import UserError
from recsys_spark.partitioning import by_key

LISTS_SCHEMA = pa.schema([USER_LISTS.field("USER_ID"), ("BINDING_ID", pa.int32()),
                          *[USER_LISTS.field(n) for n in ("include", "exclude", "applies")]])


def items_metadata(warehouse: Warehouse, filter_: Filter) -> pa.Table | None:
    """The items dataset's ID and the fields ``filter_`` reads, as Arrow on the driver (catalog-sized), or
    None when the filter reads no item field or there is no items table."""
    conditions = [c for e in filter_.expressions for c in e.conditions]
    fields = sorted({c.field for c in conditions if c.dataset == "Items"}
                    | {c.value.field for c in conditions if isinstance(c.value, CurrentItem)})
    if not fields or warehouse.config.schema("items") is None or not warehouse.exists(warehouse.path("items")):
        return None
    return warehouse.read("items").select("ITEM_ID", *fields).toArrow()


def compile_plans(warehouse: Warehouse, name: str, bindings: list[str | None], catalog: np.ndarray) -> list[FilterPlan]:
    """The config's filter ``name`` compiled once per binding (``bindings``: canonical ``filterValues`` JSON,
    None for none). A binding that cannot be bound gives a plan holding the error, which fails its lines."""
    parsed = warehouse.config.parsed_filter(name)
    items = items_metadata(warehouse, parsed)
    plans, compiled = [], {}
    for binding in bindings:
        try:
            bound = bind(parsed, json.loads(binding) if binding else {})
            if bound not in compiled:  # values written differently (" 20 ", "20") bind to the same filter
                compiled[bound] = compile_plan(bound, catalog, items, warehouse.config.schema)
            plans.append(compiled[bound])
        except UserError as e:
            plans.append(FilterPlan(error=f"filter {name}: {e}"))
    return plans


def plan_user_lists(warehouse: Warehouse, name: str, plans: list[FilterPlan],
                    wanted: DataFrame | None = None) -> DataFrame | None:
    """USER_ID, BINDING_ID, include, exclude, applies for every user some plan has lists for (None when no
    plan needs any). ``wanted`` (USER_ID): only these users' rows are read through the shuffle."""
    needing = [i for i, p in enumerate(plans) if p.error is None and p.needs_user_lists]
    if not needing:
        return None
    config = warehouse.config
    recent = config.filter(name).recent_per_event_type
    parts = []
    if any(r.per_user for i in needing for r in plans[i].rules):
        parts.append(warehouse.read("interactions").select(*EVENT_COLUMNS).withColumn("KIND", F.lit(0)))
    if any(r.condition is not None for i in needing for r in plans[i].rules):
        parts.append(warehouse.read("users").withColumn("KIND", F.lit(1)))
    rows = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
    if wanted is not None:
        rows = rows.join(wanted, "USER_ID", "left_semi")
    shared = warehouse.spark.sparkContext.broadcast([(i, plans[i]) for i in needing])
    schemas = {d: config.schema(d) for d in ("items", "users")}  # not the whole config into every task
    user_columns = schemas["users"].names if schemas["users"] is not None else []

    def lists(batches):
        batches = list(batches)
        if not batches:
            return
        table = pa.Table.from_batches(batches)
        kind = table.column("KIND").to_numpy()
        events = table.filter(pa.array(kind == 0)).select(list(EVENT_COLUMNS)) if 0 in kind else None
        users = (table.filter(pa.array(kind == 1)).select([c for c in user_columns if c in table.column_names])
                 if 1 in kind else None)
        for binding, plan in shared.value:
            out = user_lists(plan, events, users, schemas.get, recent)
            if out.num_rows:
                yield pa.record_batch([out.column("USER_ID").combine_chunks(),
                                       pa.array(np.full(out.num_rows, binding, np.int32)),
                                       *[out.column(n).combine_chunks() for n in ("include", "exclude", "applies")]],
                                      schema=LISTS_SCHEMA)

    partitions = warehouse.spark.sparkContext.defaultParallelism * 2
    return by_key(rows, partitions, "USER_ID").mapInArrow(lists, from_arrow_schema(LISTS_SCHEMA))
