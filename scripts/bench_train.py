#!/usr/bin/env python3
"""Training time and quality of user-personalization against Spark MLlib's ALS and the `implicit` library.

Same run, same machine, same synthetic data (default 100,000 users x 20,000 items, ~2 million
interactions with a planted taste structure), same rank and iterations: this project's ALS with its
default engine choice (``auto``: the driver-local engine at this size) and with the blocked engine (the
same solver in Spark tasks), MLlib's ALS with its default settings (implicit preferences on, everything
else default: 10 user and 10 item blocks, regParam 0.1, alpha 1), and, when installed, ``implicit``'s CPU ALS. Each model's NDCG@10 is
measured the same way on the same held-out interactions (each user's newest 20%), over a sample of users,
with training items excluded. Training time excludes data loading; ratios are printed.

  python scripts/bench_train.py [--users 100000 --items 20000 --per-user 20 --factors 64 --iterations 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def synthetic(users: int, items: int, per_user: float, seed: int = 0):
    """(user, item, timestamp) arrays: 50 taste clusters, each a Zipf law over its own item order, mixed
    with global Zipf popularity; history lengths geometric with mean ``per_user``."""
    rng = np.random.default_rng(seed)
    clusters = 50
    lengths = np.minimum(rng.geometric(1 / per_user, size=users), items // 4)
    user = np.repeat(np.arange(users), lengths)
    n = len(user)
    zipf = 1 / np.arange(1, items + 1) ** 0.9
    cdf = np.cumsum(zipf / zipf.sum())
    rank = np.minimum(np.searchsorted(cdf, rng.random(n)), items - 1)
    orders = np.stack([rng.permutation(items) for _ in range(clusters)])
    taste = rng.integers(0, clusters, size=users)[user]
    own = rng.random(n) < 0.7
    item = np.where(own, orders[taste, rank], rank)
    ts = 1_700_000_000 + rng.integers(0, 90 * 86400, size=n)
    keep = np.unique(user * items + item, return_index=True)[1]
    return user[keep], item[keep], ts[keep]


def split(user, item, ts):
    """Each user's newest 20% (at least one, when they have 2+) is the test set."""
    order = np.lexsort((ts, user))
    user, item, ts = user[order], item[order], ts[order]
    starts = np.r_[0, np.flatnonzero(np.diff(user)) + 1]
    counts = np.diff(np.r_[starts, len(user)])
    n_test = np.where(counts >= 2, np.maximum(1, np.round(counts * 0.2)), 0).astype(int)
    position = np.arange(len(user)) - np.repeat(starts, counts)
    test = position >= np.repeat(counts - n_test, counts)
    return (user[~test], item[~test], ts[~test]), (user[test], item[test])


def ndcg_at_10(user_f, item_f, train, test, sample) -> float:
    """Mean NDCG@10 over ``sample`` users that have test items, training items excluded."""
    from scipy import sparse

    n_users, n_items = user_f.shape[0], item_f.shape[0]
    seen = sparse.csr_matrix((np.ones(len(train[0])), (train[0], train[1])), shape=(n_users, n_items))
    truth = sparse.csr_matrix((np.ones(len(test[0])), (test[0], test[1])), shape=(n_users, n_items))
    discounts = 1 / np.log2(np.arange(2, 12))
    total = 0.0
    for start in range(0, len(sample), 1024):
        users = sample[start:start + 1024]
        scores = user_f[users] @ item_f.T
        s = seen[users].tocoo()
        scores[s.row, s.col] = -np.inf
        top = np.argsort(-scores, axis=1)[:, :10]
        t = truth[users]
        hits = np.asarray(t[np.arange(len(users))[:, None], top].todense())
        ideal = np.array([discounts[:min(int(c), 10)].sum() for c in np.diff(t.indptr)])
        total += ((hits * discounts).sum(axis=1) / ideal).sum()
    return total / len(sample)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--per-user", type=float, default=20.0)
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--sample", type=int, default=10_000, help="users whose NDCG@10 is measured")
    p.add_argument("--skip-mllib", action="store_true", help="leave MLlib out (it takes minutes)")
    args = p.parse_args(argv)

    import pandas as pd
    from pyspark.sql import functions as F

    from recsys_spark.core.models.base import matrix_of
    from recsys_spark.recipes import TrainingSet, recipe_for
    from recsys_spark.recipes.fitting import to_spark
    from recsys_spark.session import get_spark

    user, item, ts = synthetic(args.users, args.items, args.per_user)
    train, test = split(user, item, ts)
    print(f"data: {args.users:,} users x {args.items:,} items, {len(user):,} interactions "
          f"({len(train[0]):,} training, {len(test[0]):,} held out); rank {args.factors}, "
          f"{args.iterations} iterations", flush=True)
    rng = np.random.default_rng(1)
    sample = np.sort(rng.choice(np.unique(test[0]), size=min(args.sample, len(np.unique(test[0]))), replace=False))

    spark = get_spark("recsys-spark-bench-train", master="local[*]",
                      conf={"spark.ui.enabled": False, "spark.ui.showConsoleProgress": False,
                            "spark.driver.memory": "8g", "spark.sql.shuffle.partitions": 8})
    frame = to_spark(spark, pd.DataFrame({"USER_ID": train[0].astype(str), "ITEM_ID": train[1].astype(str),
                                          "TIMESTAMP": train[2], "WEIGHT": 1.0})).persist()
    frame.count()
    data = TrainingSet.build(frame)
    results = {}

    engines = {"recsys_spark (auto: local engine)": {},  # what the default picks at this size
               "recsys_spark (blocked engine, Spark tasks)": {"engine": "blocked"}}
    for name, extra in engines.items():
        recipe = recipe_for("user-personalization", {"factors": args.factors, "iterations": args.iterations, **extra})
        started = time.perf_counter()
        model = recipe.fit(data)
        seconds = time.perf_counter() - started
        # Back to integer ids for the shared NDCG function (the blocked engine's users are a DataFrame, computed
        # and held by the executors: collected here, after the timing).
        users = model.users if isinstance(model.users, pa.Table) else model.users.toArrow()
        users_f = np.zeros((args.users, args.factors), np.float32)
        trained = np.asarray(users.column("USER_ID").to_pylist(), dtype=int)
        users_f[trained] = matrix_of(users.column("FACTORS"))
        items_f = np.zeros((args.items, args.factors), np.float32)
        items_f[model.item_ids.astype(int)] = model.item_factors
        results[name] = (seconds, ndcg_at_10(users_f, items_f, train, test, sample))
        print(f"{name}: {seconds:.1f} s", flush=True)

    if not args.skip_mllib:
        from pyspark.ml.recommendation import ALS

        ratings = frame.select(F.col("USER_ID").cast("int").alias("user"), F.col("ITEM_ID").cast("int").alias("item"),
                               F.lit(1.0).alias("rating")).persist()
        ratings.count()
        started = time.perf_counter()
        mllib = ALS(rank=args.factors, maxIter=args.iterations, implicitPrefs=True, seed=0).fit(ratings)
        mllib.userFactors.count()
        seconds = time.perf_counter() - started
        u = mllib.userFactors.toPandas()
        i = mllib.itemFactors.toPandas()
        users_f = np.zeros((args.users, args.factors), np.float32)
        users_f[u["id"].to_numpy()] = np.stack(u["features"].to_numpy())
        items_f = np.zeros((args.items, args.factors), np.float32)
        items_f[i["id"].to_numpy()] = np.stack(i["features"].to_numpy())
        results["Spark MLlib ALS (defaults)"] = (seconds, ndcg_at_10(users_f, items_f, train, test, sample))
        print(f"MLlib: {seconds:.1f} s", flush=True)

    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from scipy import sparse
        from threadpoolctl import threadpool_limits

        s = recipe.settings
        matrix = sparse.csr_matrix((np.full(len(train[0]), s.alpha, np.float32), (train[0], train[1])),
                                   shape=(args.users, args.items))
        model = AlternatingLeastSquares(factors=args.factors, iterations=args.iterations,
                                        regularization=s.regularization, alpha=1.0, random_state=0)
        started = time.perf_counter()
        with threadpool_limits(1, "blas"):  # as implicit asks: its own threads, one BLAS thread each
            model.fit(matrix, show_progress=False)
        seconds = time.perf_counter() - started
        results["implicit (CPU, same settings)"] = (seconds, ndcg_at_10(model.user_factors, model.item_factors,
                                                                        train, test, sample))
        print(f"implicit: {seconds:.1f} s", flush=True)
    except ImportError:
        print("implicit is not installed: `pip install implicit` to compare with it", flush=True)

    ours = next(iter(results.values()))[0]
    print(f"\n{'engine':44} {'train s':>9} {'vs ours':>9} {'NDCG@10':>8}")
    for name, (seconds, ndcg) in results.items():
        print(f"{name:44} {seconds:9.1f} {seconds / ours:8.2f}x {ndcg:8.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
