#!/usr/bin/env python3
"""Choose recipe defaults on a validation split carved from MovieLens-100k's training part.

The benchmark protocol's test split (75/25 per item, seed 42) is never looked at: its training part is
split again 75/25 per item with another seed, each candidate setting is fitted on the inner training part
and scored on the inner validation part, and the best settings per recipe are printed.

  python scripts/tune_defaults.py ../shared/data/ml-100k [--recipe user-personalization]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GRIDS = {
    "user-personalization": {"factors": [16, 32, 64], "alpha": [1.0, 4.0, 8.0, 16.0],
                             "regularization": [10.0, 30.0, 60.0, 120.0]},
    "sims": {"popularity_discount_factor": [0.3, 0.5, 0.7], "min_cointeraction_count": [1, 2, 3],
             "similar_items": [100, 200, 400]},
    "ease": {"regularization": [50.0, 100.0, 250.0, 500.0, 1000.0]},
    "trending-now": {"window_days": [7.0, 30.0], "smoothing": [1.0, 5.0, 20.0]},
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("movielens", help="folder with ml-100k.inter (RecBole format)")
    p.add_argument("--recipe", action="append", choices=sorted(GRIDS), help="recipes to tune (default: all)")
    p.add_argument("--validation-seed", type=int, default=7)
    args = p.parse_args(argv)

    from quality_report import load_movielens  # noqa: E402 - sibling script

    from recsys_spark.evaluation import evaluate_benchmark, stratified_split
    from recsys_spark.recipes import recipe_for
    from recsys_spark.session import get_spark

    spark = get_spark("recsys-spark-tune", master="local[2]",
                      conf={"spark.ui.enabled": False, "spark.ui.showConsoleProgress": False, "spark.sql.shuffle.partitions": 4})
    training, _ = stratified_split(load_movielens(spark, Path(args.movielens)), 0.75, 42)
    training = training.persist()
    for recipe in args.recipe or list(GRIDS):
        grid = GRIDS[recipe]
        results = []
        for values in itertools.product(*grid.values()):
            settings = dict(zip(grid, values))
            started = time.perf_counter()
            m = evaluate_benchmark(recipe_for(recipe, settings), training, seed=args.validation_seed)
            results.append((m["ndcg_at_10"], settings))
            print(f"{recipe:22} {json.dumps(settings):80} nDCG@10 {m['ndcg_at_10']:.4f} MAP {m['map']:.4f} "
                  f"({time.perf_counter() - started:.1f} s)", flush=True)
        best = max(results, key=lambda r: r[0])
        print(f"best {recipe}: {json.dumps(best[1])} nDCG@10 {best[0]:.4f} on the validation split\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
