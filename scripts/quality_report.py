#!/usr/bin/env python3
"""Every recipe's quality on MovieLens-100k under both evaluation protocols, beside published figures.

Protocol (b), the recommenders project's MovieLens benchmark (75/25 split stratified per item, seed 42,
top 10, seen items removed), printed beside that project's published MovieLens-100k table; protocol (a),
the managed service's solution metrics (10% of users held out). Every rating is one interaction of
weight 1, as in that benchmark. Defaults were chosen with ``scripts/tune_defaults.py`` on a validation
split of the training part, never on the test split.

  python scripts/quality_report.py ../shared/data/ml-100k
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys_spark.core import registry  # noqa: E402

RECIPES = list(registry.RECIPES)
# The recommenders project's README table for MovieLens-100k (k = 10): name -> (MAP, nDCG@10, P@10, R@10).
PUBLISHED = {
    "BiVAE": (0.146126, 0.475077, 0.411771, 0.219145),
    "BPR": (0.132478, 0.441997, 0.388229, 0.212522),
    "LightGCN": (None, 0.420, None, None),
    "SAR": (0.110591, 0.382461, 0.330753, 0.176385),
    "ALS (MLlib, explicit)": (0.004732, 0.044239, 0.048462, 0.017796),
}
TARGETS = {"user-personalization": 0.45, "sims": 0.39, "best": 0.475}


def load_movielens(spark, folder: Path):
    """ml-100k.inter as interactions: USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE 'rating', WEIGHT 1."""
    import pandas as pd

    from recsys_spark.recipes.fitting import to_spark

    path = folder / "ml-100k.inter"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found (expected MovieLens-100k in RecBole's format)")
    frame = pd.read_csv(path, sep="\t")
    frame.columns = [c.split(":")[0] for c in frame.columns]
    out = pd.DataFrame({"USER_ID": frame["user_id"].astype(str), "ITEM_ID": frame["item_id"].astype(str),
                        "TIMESTAMP": frame["timestamp"].astype("int64"), "EVENT_TYPE": "rating", "WEIGHT": 1.0})
    return to_spark(spark, out).persist()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("movielens", help="folder with ml-100k.inter (RecBole format)")
    p.add_argument("--recipe", action="append", choices=RECIPES, help="recipes to report (default: all)")
    args = p.parse_args(argv)

    from recsys_spark.evaluation import evaluate_benchmark, evaluate_service
    from recsys_spark.recipes import recipe_for
    from recsys_spark.session import get_spark

    spark = get_spark("recsys-spark-quality", master="local[2]",
                      conf={"spark.ui.enabled": False, "spark.ui.showConsoleProgress": False, "spark.sql.shuffle.partitions": 4})
    interactions = load_movielens(spark, Path(args.movielens))
    catalog = interactions.select("ITEM_ID").distinct().count()
    recipes = args.recipe or RECIPES
    bench, service = {}, {}
    for name in recipes:
        started = time.perf_counter()
        bench[name] = evaluate_benchmark(recipe_for(name, {}), interactions)
        service[name] = evaluate_service(recipe_for(name, {}), interactions, catalog)
        print(f"{name}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)

    print("Protocol (b): recommenders' MovieLens-100k benchmark (stratified 75/25 per item, seed 42, k = 10)")
    print(f"{'model':32} {'MAP':>8} {'nDCG@10':>8} {'P@10':>8} {'R@10':>8}")
    for name in recipes:
        m = bench[name]
        print(f"{'recsys_spark ' + name:32} {m['map']:8.4f} {m['ndcg_at_10']:8.4f} {m['precision_at_10']:8.4f} "
              f"{m['recall_at_10']:8.4f}")
    fmt = lambda v: f"{v:8.4f}" if v is not None else f"{'-':>8}"  # noqa: E731
    for name, values in PUBLISHED.items():
        print(f"{'published ' + name:32} " + " ".join(fmt(v) for v in values))
    best = max(bench, key=lambda n: bench[n]["ndcg_at_10"])
    checks = [(f"best recipe ({best}) nDCG@10 > {TARGETS['best']}", bench[best]["ndcg_at_10"] > TARGETS["best"])]
    for name in ("user-personalization", "sims"):
        if name in bench:
            checks.append((f"{name} nDCG@10 >= {TARGETS[name]}", bench[name]["ndcg_at_10"] >= TARGETS[name]))
    for text, ok in checks:
        print(f"  {'met' if ok else 'NOT met'}: {text}")

    keys = ["coverage", "mean_reciprocal_rank_at_25", "normalized_discounted_cumulative_gain_at_5",
            "normalized_discounted_cumulative_gain_at_10", "normalized_discounted_cumulative_gain_at_25",
            "precision_at_5", "precision_at_10", "precision_at_25"]
    short = ["coverage", "MRR@25", "NDCG@5", "NDCG@10", "NDCG@25", "P@5", "P@10", "P@25"]
    print("\nProtocol (a): the managed service's solution metrics (10% of users held out)")
    print(f"{'recipe':24} " + " ".join(f"{s:>8}" for s in short))
    for name in recipes:
        print(f"{name:24} " + " ".join(f"{service[name][k]:8.4f}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
