#!/usr/bin/env python3
"""Benchmark: the time to compute a filter's item masks and per-user lists for a whole dataset group, by
the path the batch job takes (:func:`recsys_spark.inference.filters.compile_plans` and
:func:`~recsys_spark.inference.filters.plan_user_lists`: the core's plan and Arrow predicates, the
per-user lists computed inside Spark tasks).

Uses the synthetic e-commerce config's schemas with the warehouse at ``--root`` (import the data first),
and the filter ``INCLUDE ItemID WHERE Items.PRICE < $MAX_PRICE | EXCLUDE ItemID WHERE
Interactions.EVENT_TYPE IN ("purchase")`` (an item filter with a parameter plus an interaction filter).
Prints the seconds to compile it for one binding and to materialize the per-user lists, with users per
second.

  python scripts/generate_synthetic.py --out /tmp/f --users 1000000 --items 20000
  python -m recsys_spark import --config configs/synthetic-ecommerce.yaml   # with root pointed at /tmp/f/wh
  python scripts/bench_filters.py --root /tmp/f/wh
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from recsys_spark.config import Filter, load_config  # noqa: E402
from recsys_spark.datasets.warehouse import Warehouse  # noqa: E402
from recsys_spark.inference.filters import compile_plans, plan_user_lists  # noqa: E402
from recsys_spark.session import session_for  # noqa: E402

FILTER = ('INCLUDE ItemID WHERE Items.PRICE < $MAX_PRICE | '
          'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")')


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="warehouse root holding the imported synthetic dataset group")
    args = p.parse_args()
    config = load_config(REPO / "configs" / "synthetic-ecommerce.yaml")
    config = config.model_copy(update={"dataset_group": config.dataset_group.model_copy(update={"root": args.root}),
                                       "filters": [Filter(name="bench", expression=FILTER)]})
    spark = session_for(config, "bench-filters")
    warehouse = Warehouse(spark, config)
    users = warehouse.read("users").count()
    interactions = warehouse.read("interactions").count()
    catalog = np.sort(warehouse.read("items").select("ITEM_ID").toArrow().column("ITEM_ID").to_numpy(
        zero_copy_only=False).astype(object))
    started = time.perf_counter()
    [plan] = compile_plans(warehouse, "bench", ['{"MAX_PRICE": "50"}'], catalog)
    compiled = time.perf_counter() - started
    started = time.perf_counter()
    lists = plan_user_lists(warehouse, "bench", [plan])
    with_lists = lists.agg(F.count(F.lit(1)).alias("users"), F.sum(F.size("exclude")).alias("excluded")).first()
    materialized = time.perf_counter() - started
    item_rule = next(r for r in plan.rules if r.mask is not None)
    print(f"{users:,} users, {interactions:,} interactions; filter: {FILTER}")
    print(f"item mask ($MAX_PRICE=50): {int(item_rule.mask.sum()):,} of {len(catalog):,} items, compiled in "
          f"{compiled:.1f} s")
    print(f"per-user lists: {with_lists.users:,} users with {with_lists.excluded:,} excluded items, "
          f"{materialized:.1f} s ({users / materialized:,.0f} users/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
