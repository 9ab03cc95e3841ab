#!/usr/bin/env python3
"""Benchmark: the time to compute a filter's item sets and per-user lists for a whole dataset group.

Uses the synthetic e-commerce config's schemas with the warehouse at ``--root`` (import the data first),
and the filter ``INCLUDE ItemID WHERE Items.PRICE < $MAX_PRICE | EXCLUDE ItemID WHERE
Interactions.EVENT_TYPE IN ("purchase")`` (an item filter with a parameter plus an interaction filter).
Prints the seconds to compile it for one binding and to materialize the per-user lists, with users per
second. (Batch inference, when it lands, compares a whole run with and without the filter.)

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

from pyspark.sql import functions as F  # noqa: E402

from recsys_spark.config import load_config  # noqa: E402
from recsys_spark.datasets.warehouse import Warehouse  # noqa: E402
from recsys_spark.filters import parse_filter  # noqa: E402
from recsys_spark.filters.compiler import FilterPlans  # noqa: E402
from recsys_spark.session import session_for  # noqa: E402

FILTER = ('INCLUDE ItemID WHERE Items.PRICE < $MAX_PRICE | '
          'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")')


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="warehouse root holding the imported synthetic dataset group")
    args = p.parse_args()
    config = load_config(REPO / "configs" / "synthetic-ecommerce.yaml")
    config = config.model_copy(update={"dataset_group": config.dataset_group.model_copy(update={"root": args.root})})
    spark = session_for(config, "bench-filters")
    warehouse = Warehouse(spark, config)
    users = warehouse.read("users").count()
    interactions = warehouse.read("interactions").count()
    plans = FilterPlans(parse_filter(FILTER), warehouse)
    started = time.perf_counter()
    plan = plans.for_values({"MAX_PRICE": "50"})
    compiled = time.perf_counter() - started
    started = time.perf_counter()
    lists = plan.user_lists()
    with_lists = lists.agg(F.count(F.lit(1)).alias("users"), F.sum(F.size("exclude")).alias("excluded")).first()
    materialized = time.perf_counter() - started
    item_rule = next(r for r in plan.rules if r.items is not None)
    print(f"{users:,} users, {interactions:,} interactions; filter: {FILTER}")
    print(f"item set ($MAX_PRICE=50): {len(item_rule.items):,} items, compiled in {compiled:.1f} s")
    print(f"per-user lists: {with_lists.users:,} users with {with_lists.excluded:,} excluded items, "
          f"{materialized:.1f} s ({users / materialized:,.0f} users/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
