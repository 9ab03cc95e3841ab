#!/usr/bin/env python3
"""Batch inference speed: this project's batch job end to end against MLlib's `recommendForAllUsers`, the
`implicit` library's batched `recommend` and the pure matrix-product limit, on the same factors.

Synthetic rank-64 factors for ``--users`` x ``--items`` (default 100,000 x 20,000) and ~20 seen items per
user (a Delta interactions table), top 25. Timed, in one run on this machine:

* recsys_spark: `run_batch` on `all_users` with seen-item exclusion, end to end: reading the tables and
  the model, grouping histories, scoring, writing the service's JSON lines, committing. Three times: the
  first run in the new Spark application pays the JVM's code generation and warm-up and starts the Python
  workers (what one scheduled job sees); the best of the next two is what further jobs in the same
  application (a pipeline's batch steps) see.
* MLlib: `ALSModel.recommendForAllUsers(25)` on the same factors, written as JSON (it excludes nothing).
* implicit (when installed): `recommend(all users, N=25, filter_already_liked_items=True)` in batches.
* matrix products: the float32 user-block x item-factor products alone, the floor for any exact method.

Two more rows say where this project's time goes (``--no-split`` leaves them out):

* the Python kernel alone, one core, in memory: what each scoring task runs on its rows (grouping by
  user, product, exclusions, top-k, JSON lines), over the same users in tasks of 25,000, against
  implicit's ``recommend`` on one thread (product, exclusions, top-k). Per core, on the same work.
* Spark alone: the same batch job with the kernel swapped for one that returns nothing (the tables read,
  the shuffle by user, the rows moved into the Python workers; no lines written): the cost of doing it
  in Spark, which implicit (data already in memory, nothing written) does not pay.

Prints users per second, each ratio to this project's time, and the peak resident memory of the Spark
executors' Python workers and JVM (sampled from /proc).

  python scripts/bench_batch.py [--users 100000 --items 20000] [--runs 3] [--skip-mllib] [--no-split]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
RANK, TOP = 64, 25
COLD = "recsys_spark batch job, 1st run (end to end)"
WARM = "recsys_spark batch job, best of runs 2-3 (end to end)"
SPARK_ALONE = "Spark alone: the same job, kernel returns nothing"
KERNEL_ALONE = "recsys_spark Python kernel alone, 1 core, in memory"
IMPLICIT = "implicit recommend (scoring only)"
IMPLICIT_ONE = "implicit recommend, 1 thread, in memory"


class MemorySampler(threading.Thread):
    """Peak summed RSS of Spark's JVM and Python worker processes (Linux /proc), sampled every 0.2 s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self._stop = 0, threading.Event()

    def run(self):
        while not self._stop.wait(0.2):
            total = 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if b"pyspark" not in cmd and b"org.apache.spark" not in cmd:
                        continue
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
                except OSError:
                    continue
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self._stop.set()
        return self.peak


def spark_alone(spark, config) -> float:
    """Seconds of the batch job with a kernel that returns nothing (the real one is put back after)."""
    from recsys_spark.inference import frame
    from recsys_spark.inference.batch import run_batch

    real = frame.score_partition
    frame.score_partition = lambda *args: iter(())  # pickled by value into the tasks' closure
    try:
        started = time.perf_counter()
        run_batch(spark, config, "everyone")
        return time.perf_counter() - started
    finally:
        frame.score_partition = real


def kernel_alone(model, users, seen_user, seen_item, user_ids, item_ids, task_users: int = 25_000) -> float:
    """Seconds of the scoring tasks' Python kernel (score_partition + json_lines) on one core, in
    memory, over every user in tasks of ``task_users`` (the rows such a task receives: history entries and
    stored factors)."""
    import pyarrow as pa
    from threadpoolctl import threadpool_limits

    from recsys_spark.core.kernels.lines import json_lines
    from recsys_spark.core.kernels.scorer import ENTRY, FACTORS, KernelSettings, score_partition

    settings = KernelSettings(TOP, exclude_seen=True, fresh_after=1_700_000_000)
    catalog = np.argsort(np.argsort(item_ids))  # generated item i -> its index in the (sorted) catalog
    rank = users.shape[1]
    seconds = 0.0
    with threadpool_limits(1, "blas"):
        for start in range(0, len(users), task_users):
            stop = min(start + task_users, len(users))
            mine = (seen_user >= start) & (seen_user < stop)
            n_entries, n_users = int(mine.sum()), stop - start
            factors = pa.ListArray.from_arrays(
                np.concatenate([np.zeros(n_entries, np.int32), np.arange(n_users + 1, dtype=np.int32) * rank]),
                users[start:stop].ravel())
            table = pa.table({
                "KIND": np.concatenate([np.full(n_entries, ENTRY), np.full(n_users, FACTORS)]).astype(np.int32),
                "USER_ID": pa.array(np.concatenate([user_ids[seen_user[mine]], user_ids[start:stop]]), pa.string()),
                "ITEM_IDX": np.concatenate([catalog[seen_item[mine]], np.zeros(n_users, np.int64)]).astype(np.int32),
                "WEIGHT": np.ones(n_entries + n_users, np.float32),
                "TIMESTAMP": np.full(n_entries + n_users, 1_700_000_000, np.int64),
                "FACTORS": factors})
            started = time.perf_counter()
            for out in score_partition(model, table, settings, True):
                json_lines(out)
            seconds += time.perf_counter() - started
    return seconds


def implicit_seconds(users, items, seen_user, seen_item, threads: int) -> float:
    """Seconds of implicit's batched recommend (seen items filtered) on ``threads`` threads (0: every core),
    one BLAS thread each, as it asks."""
    from implicit.cpu.als import AlternatingLeastSquares
    from scipy import sparse
    from threadpoolctl import threadpool_limits

    seen = sparse.csr_matrix((np.ones(len(seen_user), np.float32), (seen_user, seen_item)),
                             shape=(len(users), len(items)))
    als = AlternatingLeastSquares(factors=RANK, num_threads=threads)
    als.user_factors, als.item_factors = users, items
    every = np.arange(len(users))
    started = time.perf_counter()
    with threadpool_limits(1, "blas"):
        for start in range(0, len(users), 10_000):
            batch = every[start:start + 10_000]
            als.recommend(batch, seen[batch], N=TOP, filter_already_liked_items=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--seen", type=int, default=20, help="seen items per user")
    p.add_argument("--runs", type=int, default=3, help="runs of this project's job (the 1st is reported apart)")
    p.add_argument("--skip-mllib", action="store_true")
    p.add_argument("--no-split", action="store_true", help="leave out the kernel-alone and Spark-alone rows")
    p.add_argument("--workdir", help="keep the warehouse and outputs here (default: a temporary folder)")
    args = p.parse_args(argv)

    import pandas as pd

    from recsys_spark.config import load_config
    from recsys_spark.datasets.warehouse import Warehouse
    from recsys_spark.inference.batch import run_batch
    from recsys_spark.core.models.factors import FactorModel, user_table
    from recsys_spark.recipes.fitting import to_spark
    from recsys_spark.session import get_spark
    from recsys_spark.solutions.store import version_store

    work = Path(args.workdir or tempfile.mkdtemp(prefix="recsys-bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    users = rng.normal(0, 0.3, (args.users, RANK)).astype(np.float32)
    items = rng.normal(0, 0.3, (args.items, RANK)).astype(np.float32)
    seen_user = np.repeat(np.arange(args.users), args.seen)
    seen_item = rng.integers(0, args.items, len(seen_user))
    print(f"{args.users:,} users x {args.items:,} items, rank {RANK}, top {TOP}, {len(seen_user):,} seen "
          f"interactions; work folder {work}", flush=True)

    config_path = work / "bench.yaml"
    config_path.write_text(f"""
dataset_group:
  name: bench
  root: {work}/warehouse
  schemas:
    interactions:
      fields:
        - {{name: USER_ID, type: string}}
        - {{name: ITEM_ID, type: string}}
        - {{name: TIMESTAMP, type: long}}
        - {{name: EVENT_TYPE, type: string}}
solutions:
  - {{name: factors, recipe: user-personalization, settings: {{factors: {RANK}}}}}
batch_jobs:
  - {{name: everyone, solution: factors, input: all_users, output: {work}/out/recsys, num_results: {TOP}}}
""")
    config = load_config(config_path)
    spark = get_spark("recsys-spark-bench-batch", master="local[*]",
                      conf={"spark.ui.showConsoleProgress": False, "spark.driver.memory": "8g",
                            "spark.sql.shuffle.partitions": 8})
    warehouse = Warehouse(spark, config)
    warehouse.ensure_table("interactions")
    user_ids = np.array([f"u{i}" for i in range(args.users)], dtype=object)
    item_ids = np.array([f"i{i}" for i in range(args.items)], dtype=object)
    interactions = pd.DataFrame({"USER_ID": user_ids[seen_user], "ITEM_ID": item_ids[seen_item],
                                 "TIMESTAMP": np.full(len(seen_user), 1_700_000_000, dtype=np.int64),
                                 "EVENT_TYPE": "view", "_ORIGIN": "bulk", "_EVENT_ID": None})
    to_spark(spark, interactions).write.format("delta").mode("append").save(warehouse.path("interactions"))
    # A solution version holding the synthetic factors, as `train` would have written it.
    order = np.argsort(item_ids)  # a model's catalog is sorted by item ID
    solution = config.solution("factors")
    settings = solution.recipe_settings()
    model = FactorModel(item_ids[order], np.ones(args.items, np.float32), items[order], settings,
                        user_table(user_ids, users))
    version_store(spark, config).save(solution.name, model, {
        "recipe": solution.recipe, "settings": settings.model_dump(), "events": solution.events.model_dump(),
        "datasets": warehouse.versions(), "newest_interaction": 1_700_000_000,
        "counts": {"interactions": len(seen_user)}})
    results = {}

    sampler = MemorySampler()
    sampler.start()
    for run in [COLD] + [WARM] * (args.runs - 1):  # the first run pays the JVM's and workers' warm-up
        started = time.perf_counter()
        result = run_batch(spark, config, "everyone")
        results[run] = min(results.get(run, np.inf), time.perf_counter() - started)
        print(result.summary(), flush=True)
    peak = sampler.stop()
    print(f"peak RSS of Spark's JVM + Python workers during the jobs: {peak / 2**30:.2f} GiB", flush=True)
    if not args.no_split:
        results[SPARK_ALONE] = spark_alone(spark, config)

    if not args.skip_mllib:
        from pyspark.ml.recommendation import ALS, ALSModel

        tiny = spark.createDataFrame([(0, 0, 1.0), (1, 1, 1.0)], "user int, item int, rating float")
        path = str(work / "mllib-model")
        ALS(rank=RANK, maxIter=1, implicitPrefs=True).fit(tiny).write().overwrite().save(path)
        for name, factors in (("userFactors", users), ("itemFactors", items)):
            frame = pd.DataFrame({"id": np.arange(len(factors), dtype=np.int32), "features": list(factors)})
            to_spark(spark, frame).write.mode("overwrite").parquet(f"{path}/{name}")
        mllib = ALSModel.load(path)
        started = time.perf_counter()
        mllib.recommendForAllUsers(TOP).write.mode("overwrite").json(str(work / "out" / "mllib"))
        results["MLlib recommendForAllUsers (no exclusion)"] = time.perf_counter() - started
        print(f"MLlib: {results['MLlib recommendForAllUsers (no exclusion)']:.1f} s", flush=True)

    spark.stop()
    try:
        results[IMPLICIT] = implicit_seconds(users, items, seen_user, seen_item, threads=0)
    except ImportError:
        print("implicit is not installed: `pip install implicit` to compare with it", flush=True)

    if not args.no_split:
        results[KERNEL_ALONE] = kernel_alone(model, users, seen_user, seen_item, user_ids, item_ids)
        if IMPLICIT in results:
            results[IMPLICIT_ONE] = implicit_seconds(users, items, seen_user, seen_item, threads=1)

    started = time.perf_counter()
    for start in range(0, args.users, 1024):
        users[start:start + 1024] @ items.T
    results["float32 matrix products alone"] = time.perf_counter() - started

    later = f"{'vs ours, later':>17}" if WARM in results else ""
    print(f"\n{'method':52} {'seconds':>8} {'users/s':>10} {'vs ours, 1st run':>17} {later}")
    for name, seconds in results.items():
        print(f"{name:52} {seconds:8.1f} {args.users / seconds:10,.0f} {seconds / results[COLD]:16.2f}x "
              + (f"{seconds / results[WARM]:16.2f}x" if WARM in results else ""))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
