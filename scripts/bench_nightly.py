#!/usr/bin/env python3
"""Benchmark: what a night costs with only the new work (only_new_files imports, retrain when changed)
against a full night (FULL imports of every file, retraining every night), in one Spark session, on the
same folder of daily drops (written with Python's csv module).

Both warehouses first take the first ``days - 1`` days (not compared); then one day is dropped and each
runs its night: the nightly warehouse imports that file and retrains, the full one re-reads every file and
retrains; then the nightly warehouse runs a night with nothing new. Steps: import, train, batch (every
user, top 25, purchases excluded), maintain; solutions: ALS (32 factors, 10 iterations) and popularity.

  python scripts/bench_nightly.py [--days 14 --rows-per-day 50000 --users 20000 --items 4000]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recsys_spark.config import Config  # noqa: E402
from recsys_spark.pipeline import run_pipeline  # noqa: E402
from recsys_spark.session import session_for  # noqa: E402

EVENTS = ("view", "cart", "purchase")


def drop_day(drops: Path, day: int, rows: int, users: int, items: int) -> None:
    rng = np.random.default_rng(day)
    item = np.minimum(rng.zipf(1.3, rows), items) - 1  # power-law popularity
    user = rng.integers(0, users, rows)
    event = rng.choice(len(EVENTS), rows, p=[0.8, 0.15, 0.05])
    start = 1_764_460_800 + day * 86_400
    with (drops / "interactions" / f"day-{day:03d}.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"])
        out.writerows((f"u{u}", f"i{i}", start + n * 86_400 // rows, EVENTS[e], "")  # within the day
                      for n, (u, i, e) in enumerate(zip(user.tolist(), item.tolist(), event.tolist())))


def catalog(drops: Path, users: int, items: int) -> None:
    for name in ("interactions", "users", "items"):
        (drops / name).mkdir(parents=True, exist_ok=True)
    with (drops / "users" / "users.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["USER_ID", "AGE_GROUP", "GENDER", "MEMBERSHIP"])
        out.writerows((f"u{u}", "25-34", "F" if u % 2 else "M", "gold" if u % 7 == 0 else "") for u in range(users))
    with (drops / "items" / "items.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["ITEM_ID", "CATEGORY_L1", "CATEGORIES", "BRAND", "PRICE", "CREATION_TIMESTAMP"])
        out.writerows((f"i{i}", f"c{i % 12}", f"c{i % 12}|s{i % 40}", f"b{i % 90}", 5 + i % 200, 1_700_000_000)
                      for i in range(items))


def config(work: Path, drops: Path, nightly: bool) -> Config:
    base = yaml.safe_load((REPO / "configs" / "synthetic-ecommerce.yaml").read_text())
    name = "nightly" if nightly else "full"
    mode = {"mode": "INCREMENTAL", "only_new_files": True} if nightly else {"mode": "FULL"}
    retrain = {"when": "changed"} if nightly else {"when": "always"}
    base["dataset_group"]["root"] = str(work / name / "warehouse")
    base["imports"] = [{"dataset": d, "source": str(drops / d), **mode} for d in ("users", "items", "interactions")]
    base.pop("ingest", None)
    base.pop("campaigns", None)
    base["solutions"] = [{**s, "retrain": retrain} for s in base["solutions"] if s["name"] in ("for-you", "popular")]
    base["batch_jobs"] = [{**j, "output": str(work / name / "weekly-mail")} for j in base["batch_jobs"]
                          if j["name"] == "weekly-mail"]
    base["spark"] = {"master": "local[*]", "conf": {"spark.driver.memory": "6g", "spark.sql.shuffle.partitions": 4,
                                                    "spark.ui.enabled": False}}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(base))
    from recsys_spark.config import load_config

    return load_config(path)


def night(spark, cfg: Config, label: str) -> dict[str, float]:
    started = time.perf_counter()
    result = run_pipeline(spark, cfg, ("import", "train", "batch", "maintain"))
    per_step: dict[str, float] = {}
    for s in result.steps:
        per_step[s.step] = per_step.get(s.step, 0.0) + s.seconds
    per_step["total"] = time.perf_counter() - started
    print(f"\n{label}\n{result.table()}", flush=True)
    return per_step


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--rows-per-day", type=int, default=50_000)
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--items", type=int, default=4_000)
    p.add_argument("--work", help="working folder (default: a new temporary one)")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-nightly-"))
    drops = work / "drops"
    catalog(drops, args.users, args.items)
    for day in range(1, args.days):
        drop_day(drops, day, args.rows_per_day, args.users, args.items)
    nightly, full = config(work, drops, True), config(work, drops, False)
    spark = session_for(nightly, "bench-nightly")
    print(f"{args.days - 1} days x {args.rows_per_day:,} interactions, {args.users:,} users, {args.items:,} items "
          f"in {work}", flush=True)
    night(spark, nightly, "first load (nightly warehouse, not compared)")
    night(spark, full, "first load (full warehouse, not compared)")
    drop_day(drops, args.days, args.rows_per_day, args.users, args.items)
    runs = {"full night (every file, retrain)": night(spark, full, "full night: every file again, retrain"),
            "night with one new day's file": night(spark, nightly, "nightly: one new day's file"),
            "night with no new data": night(spark, nightly, "nightly: nothing new")}
    steps = ("import", "train", "batch", "maintain", "total")
    full_total = runs["full night (every file, retrain)"]["total"]
    print(f"\n{'seconds':34}" + "".join(f"{s:>10}" for s in steps) + f"{'vs full':>9}")
    for label, t in runs.items():
        print(f"{label:34}" + "".join(f"{t.get(s, 0.0):>10.1f}" for s in steps) + f"{t['total'] / full_total:>8.2f}x")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
