#!/usr/bin/env python3
"""How import, training and batch grow with the data: a ladder of synthetic sizes on this machine.

For each rung (users x items x interactions; power-law item popularity, lognormal user activity: the
project's generator), in a fresh Spark application of its own:

* import: the interactions CSV into the Delta table (validating import, as `recsys-spark import`);
* train: `user-personalization`, rank 64, 10 iterations, default engine choice (``local`` up to 5 million
  interactions, ``blocked`` above), no offline evaluation;
* batch: every user, top 25, seen items excluded, the service's JSON lines written;
* MLlib's ALS trained on the same table (same rank and iterations) where it finishes within
  ``--mllib-seconds`` (its jobs are cancelled past that), and ``implicit`` where installed and the rung is
  at most ``--implicit-max`` interactions;
* NDCG@10 of each trained model for 10,000 users on each one's newest interaction, held out of training;
* the bare float32 products of every user's factors with every item's (random factors of the same
  shapes, in blocks, all cores), the floor under any exact batch.

Each stage reports wall seconds, the driver's peak Python memory (this process's resident set), the peak
of the Spark JVM and of the Python workers (summed, sampled from /proc), shuffle bytes written and the cost
at ``--price`` per core-hour. Then the growth exponent of each stage's time against interactions
(log-log slope between rungs) and the ratios the README states.

  python scripts/bench_scale.py --work /data/scale
  python scripts/bench_scale.py --work /data/scale --sizes 100000x20000x2000000,1000000x50000x20000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RANK, ITERATIONS, TOP, HELD_USERS = 64, 10, 25, 10_000
LADDER = "100000x20000x2000000,1000000x50000x20000000,3000000x100000x60000000"
EVENTS_PER_VIEW = 1.144  # the generator adds carts and purchases to its views: interactions / views, measured


class Peaks(threading.Thread):
    """Peak resident memory of the Spark JVM and of the Python workers (summed), from /proc every 0.2 s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.jvm = self.workers = 0
        self._done = threading.Event()

    def run(self):
        while not self._done.wait(0.2):
            jvm = workers = 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                    rss = _rss(pid)
                except OSError:
                    continue
                if b"org.apache.spark" in cmd:
                    jvm += rss
                elif b"pyspark.daemon" in cmd or b"pyspark.worker" in cmd:
                    workers += rss
            self.jvm, self.workers = max(self.jvm, jvm), max(self.workers, workers)

    def stop(self) -> tuple[int, int]:
        self._done.set()
        self.join()
        return self.jvm, self.workers


def _rss(pid: str, field: str = "VmRSS:") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0


def measured(spark, name: str, work, price: float) -> tuple[object, dict]:
    """(work's result, its figures): wall seconds, peaks, shuffle bytes and cost of the Spark jobs it ran."""
    from recsys_spark.runmetrics import stage_totals

    store = spark.sparkContext._jsc.sc().statusStore()
    before = {int(j.jobId()) for j in _jobs(store)}
    Path("/proc/self/clear_refs").write_text("5")  # resets this process's peak resident set
    peaks = Peaks()
    peaks.start()
    started = time.perf_counter()
    result = work()
    wall = time.perf_counter() - started
    jvm, workers = peaks.stop()
    totals = stage_totals(store, [int(j.jobId()) for j in _jobs(store) if int(j.jobId()) not in before])
    cores = spark.sparkContext.defaultParallelism
    figures = {"stage": name, "seconds": round(wall, 1), "driver_python_bytes": _rss("self", "VmHWM:"),
               "jvm_bytes": jvm, "workers_bytes": workers, "shuffle_bytes": totals["shuffle_write_bytes"],
               "cpu_seconds": round(totals["cpu_seconds"], 1),
               "cost_usd": round(wall * cores / 3600 * price, 5)}
    print(json.dumps(figures), flush=True)
    return result, figures


def _jobs(store) -> list:
    jobs = store.jobsList(None)
    return [jobs.apply(i) for i in range(jobs.size())]


def held_out_ndcg(spark, version, held) -> float:
    """NDCG@10 of the version's stored user factors for the held-out users: one relevant item each, their
    training items excluded."""
    from recsys_spark.core.models.base import matrix_of
    from recsys_spark.solutions.store import user_factors

    items = spark.read.parquet(f"{version.path}/items").toArrow()
    item_index = {item: i for i, item in enumerate(items.column("ITEM_ID").to_pylist())}
    item_f = matrix_of(items.column("FACTORS"))
    users = user_factors(spark, version).join(held.select("USER_ID").distinct(), "USER_ID").toArrow()
    user_index = {u: i for i, u in enumerate(users.column("USER_ID").to_pylist())}
    user_f = matrix_of(users.column("FACTORS"))
    seen = {r.USER_ID: [item_index[i] for i in r.SEEN if i in item_index]
            for r in held.select("USER_ID", "SEEN").collect()}
    names = users.column("USER_ID").to_pylist()
    top = np.zeros((len(names), 10), dtype=np.int64)
    for start in range(0, len(names), 1000):  # 1,000 users' scores at a time: 0.4 GB at 100,000 items
        scores = user_f[start:start + 1000] @ item_f.T
        for row, name in enumerate(names[start:start + 1000]):
            scores[row, seen.get(name, [])] = -np.inf
        best = np.argpartition(-scores, 10, axis=1)[:, :10]
        order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1)
        top[start:start + 1000] = np.take_along_axis(best, order, axis=1)
    gains = []
    for r in held.select("USER_ID", "HELD").collect():
        row = user_index.get(r.USER_ID)
        hit = np.flatnonzero(top[row] == item_index.get(r.HELD, -1)) if row is not None else []
        gains.append(1 / math.log2(hit[0] + 2) if len(hit) else 0.0)
    return float(np.mean(gains)) if gains else 0.0


def products_seconds(users: int, items: int) -> float:
    """Seconds of the float32 (users x RANK) @ (RANK x items) products in blocks of 4,096 users."""
    rng = np.random.default_rng(0)
    item_t = np.ascontiguousarray(rng.standard_normal((items, RANK), dtype=np.float32).T)
    block = rng.standard_normal((4096, RANK), dtype=np.float32)
    out = np.empty((4096, items), dtype=np.float32)
    started = time.perf_counter()
    for start in range(0, users, 4096):
        n = min(4096, users - start)
        np.matmul(block[:n], item_t, out=out[:n])
    return time.perf_counter() - started


def rung(args) -> int:
    """One rung in this process: data prepared, then the stages measured; figures as JSON lines."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from recsys_spark.config import load_config
    from recsys_spark.datasets.importer import run_imports
    from recsys_spark.inference.batch import run_batch
    from recsys_spark.session import get_spark
    from recsys_spark.solutions.train import train_solution

    users, items, interactions = (int(x) for x in args.rung.split("x"))
    work = Path(args.work) / f"{users}x{items}x{interactions}"
    data = work / "data"
    if not (data / "interactions.csv").exists():
        subprocess.run([sys.executable, str(REPO / "scripts" / "generate_synthetic.py"), "--out", str(data),
                        "--users", str(users), "--items", str(items),
                        "--mean-views", str(interactions / users / EVENTS_PER_VIEW), "--batch-users", "1"],
                       check=True, stdout=subprocess.DEVNULL)
    config_path = work / "scale.yaml"
    config_path.write_text(CONFIG.format(root=work / "warehouse", out=work / "out", rank=RANK,
                                         iterations=ITERATIONS, top=TOP))
    config = load_config(config_path)
    spark = get_spark("recsys-spark-bench-scale", master="local[*]", conf={
        "spark.ui.showConsoleProgress": False, "spark.driver.memory": args.driver_memory,
        "spark.sql.shuffle.partitions": max(8, interactions // 2_000_000)})
    # The held-out split (not timed): each of 10,000 users' newest interaction leaves the training file.
    csv = spark.read.option("header", True).csv(str(data / "interactions.csv"))
    newest = Window.partitionBy("USER_ID").orderBy(F.col("TIMESTAMP").cast("long").desc(), "ITEM_ID")
    marked = csv.withColumn("HELD", (F.abs(F.xxhash64("USER_ID")) % max(1, users // HELD_USERS) == 0)
                            & (F.row_number().over(newest) == 1))
    train_csv = work / "train-csv"
    if not train_csv.exists():
        marked.where(~F.col("HELD")).drop("HELD").write.option("header", True).csv(str(train_csv))
    held_rows = marked.where("HELD").select("USER_ID", F.col("ITEM_ID").alias("HELD"))
    seen = csv.join(held_rows, "USER_ID").where(F.col("ITEM_ID") != F.col("HELD")).groupBy("USER_ID").agg(
        F.collect_set("ITEM_ID").alias("SEEN"))
    held = held_rows.join(seen, "USER_ID", "left").withColumn("SEEN", F.coalesce("SEEN", F.array())).cache()
    print(json.dumps({"rung": args.rung, "held_users": held.count()}), flush=True)

    price = config.cost.price_per_core_hour_usd
    stages = args.stages.split(",")
    if "import" in stages:
        measured(spark, "import", lambda: run_imports(spark, config, "interactions", source=str(train_csv)), price)
    if "train" in stages:
        version, _ = measured(spark, "train", lambda: train_solution(spark, config, "als", evaluate=False), price)
        print(json.dumps({"stage": "train", "engine_seconds": version.manifest["training_seconds"],
                          "ndcg_at_10": held_out_ndcg(spark, version, held)}), flush=True)
    if "batch" in stages:  # on the newest trained version
        measured(spark, "batch", lambda: run_batch(spark, config, "everyone"), price)
    if interactions <= args.mllib_max:
        mllib_training(spark, config, held, price, args.mllib_seconds)
    spark.stop()
    if interactions <= args.implicit_max:
        implicit_training(work / "warehouse", users, items)
    print(json.dumps({"stage": "products", "seconds": round(products_seconds(users, items), 3)}), flush=True)
    return 0


def mllib_training(spark, config, held, price: float, limit: float) -> None:
    """MLlib's ALS on the same table through the same `train`, its jobs cancelled after ``limit`` seconds."""
    from recsys_spark.solutions.train import train_solution

    outcome = {}

    def run():
        spark.sparkContext.setJobGroup("bench-mllib", "MLlib ALS", interruptOnCancel=True)
        try:
            outcome["version"] = train_solution(spark, config, "mllib", evaluate=False)
        except Exception as e:  # noqa: BLE001 - cancelled past the limit, reported as such
            outcome["error"] = str(e).splitlines()[0][:200]

    def timed():
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(limit)
        if thread.is_alive():
            spark.sparkContext.cancelJobGroup("bench-mllib")
            thread.join()
            outcome["error"] = f"over the {limit:.0f} s limit"

    measured(spark, "mllib-train", timed, price)
    if "version" in outcome:
        print(json.dumps({"stage": "mllib-train", "engine_seconds": outcome["version"].manifest["training_seconds"],
                          "ndcg_at_10": held_out_ndcg(spark, outcome["version"], held)}), flush=True)
    else:
        print(json.dumps({"stage": "mllib-train", "error": outcome["error"]}), flush=True)


def implicit_training(warehouse: Path, users: int, items: int) -> None:
    """implicit's ALS (CPU, same rank and iterations, one BLAS thread as it asks) on the same interactions,
    read from the Delta table's Parquet files (its current files are all of it after one import)."""
    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError:
        print(json.dumps({"stage": "implicit-train", "error": "implicit is not installed"}), flush=True)
        return
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from scipy import sparse
    from threadpoolctl import threadpool_limits

    table = ds.dataset(str(warehouse / "interactions"), format="parquet",
                       exclude_invalid_files=True).to_table(columns=["USER_ID", "ITEM_ID"])
    u = pc.dictionary_encode(table.column("USER_ID")).combine_chunks()
    i = pc.dictionary_encode(table.column("ITEM_ID")).combine_chunks()
    matrix = sparse.csr_matrix((np.ones(len(u), np.float32), (u.indices.to_numpy(), i.indices.to_numpy())),
                               shape=(len(u.dictionary), len(i.dictionary)))
    als = AlternatingLeastSquares(factors=RANK, iterations=ITERATIONS, calculate_training_loss=False)
    started = time.perf_counter()
    with threadpool_limits(1, "blas"):
        als.fit(matrix, show_progress=False)
    print(json.dumps({"stage": "implicit-train", "seconds": round(time.perf_counter() - started, 1)}), flush=True)


CONFIG = """
dataset_group:
  name: scale
  root: {root}
  schemas:
    interactions:
      fields:
        - {{name: USER_ID, type: string}}
        - {{name: ITEM_ID, type: string}}
        - {{name: TIMESTAMP, type: long}}
        - {{name: EVENT_TYPE, type: string}}
        - {{name: EVENT_VALUE, type: ["null", float]}}
solutions:
  - name: als
    recipe: user-personalization
    settings: {{factors: {rank}, iterations: {iterations}, min_interactions: 1}}
  - name: mllib
    recipe: user-personalization
    settings: {{factors: {rank}, iterations: {iterations}, engine: mllib, regularization: 0.1, min_interactions: 1}}
batch_jobs:
  - {{name: everyone, solution: als, input: all_users, output: {out}, num_results: {top}}}
"""


def report(results: dict[str, list[dict]]) -> None:
    """The table, the slopes and the ratios, from every rung's JSON lines."""
    rungs = sorted(results, key=lambda r: int(r.split("x")[2]))
    print("\n| users x items x interactions | stage | seconds | driver Python peak | JVM peak | Python workers "
          "peak | shuffle written | cost |")
    print("|---|---|---|---|---|---|---|---|")
    gib = lambda b: f"{b / 2**30:.2f} GiB" if b else "-"  # noqa: E731
    for r in rungs:
        for f in results[r]:
            if "driver_python_bytes" in f:
                print(f"| {r} | {f['stage']} | {f['seconds']:,.1f} | {gib(f['driver_python_bytes'])} | "
                      f"{gib(f['jvm_bytes'])} | {gib(f['workers_bytes'])} | {gib(f['shuffle_bytes'])} | "
                      f"${f['cost_usd']:.4f} |")
    for r in rungs:
        extra = {f["stage"]: f for f in results[r] if "driver_python_bytes" not in f and "stage" in f}
        facts = [f"{stage}: " + ", ".join(f"{k} {v}" for k, v in f.items() if k != "stage")
                 for stage, f in extra.items()]
        print(f"{r}: " + "; ".join(facts))
        batch = next((f["seconds"] for f in results[r] if f.get("stage") == "batch" and "jvm_bytes" in f), None)
        if batch and "products" in extra:
            print(f"  batch / bare products: {batch / extra['products']['seconds']:.2f}x")
        ours = next((f for f in results[r] if f.get("stage") == "train" and "engine_seconds" in f), None)
        mllib = extra.get("mllib-train")
        if ours and mllib and "engine_seconds" in mllib:
            print(f"  MLlib training / ours: {mllib['engine_seconds'] / ours['engine_seconds']:.2f}x")
    print("\ngrowth exponent of each stage's time against interactions (log-log slope):")
    for stage in ("import", "train", "batch"):
        points = [(int(r.split("x")[2]), f["seconds"]) for r in rungs for f in results[r]
                  if f.get("stage") == stage and "jvm_bytes" in f]
        slopes = [math.log(t2 / t1) / math.log(n2 / n1) for (n1, t1), (n2, t2) in zip(points, points[1:])]
        print(f"  {stage}: " + ", ".join(f"{s:.2f}" for s in slopes))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, help="a folder with room for the data (~40 bytes per interaction x 4)")
    p.add_argument("--sizes", default=LADDER, help=f"rungs, users x items x interactions (default {LADDER})")
    p.add_argument("--mllib-seconds", type=float, default=1800, help="MLlib's training limit (default 1800)")
    p.add_argument("--mllib-max", type=int, default=20_000_000, help="largest rung MLlib is tried on")
    p.add_argument("--implicit-max", type=int, default=20_000_000, help="largest rung implicit is tried on")
    p.add_argument("--driver-memory", default="12g")
    p.add_argument("--stages", default="import,train,batch",
                   help="this project's stages to run (default all; batch alone uses the newest trained version)")
    p.add_argument("--rung", help=argparse.SUPPRESS)  # one rung, in a process of its own
    args = p.parse_args(argv)
    if args.rung:
        return rung(args)
    results = {}
    for size in args.sizes.split(","):
        print(f"== {size}", flush=True)
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--rung", size], stdout=subprocess.PIPE,
                               text=True)
        results[size] = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
        for line in child.stdout.splitlines():
            print("  " + line, flush=True)
        if child.returncode:
            print(f"rung {size} failed with exit code {child.returncode}", flush=True)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
