#!/usr/bin/env python3
"""Benchmark: CSV import with validation and rejects against a plain Spark CSV -> Delta copy.

Both run in one Spark session on the same file, each into a fresh table; the plain copy is
``spark.read.csv(header, schema).write.format("delta")`` (no validation, no rejects, nothing kept of bad
lines). Prints rows per second of each and the ratio (aim: validation costs less than 1.5x the copy).

  python scripts/generate_synthetic.py --out /tmp/bench --users 350000 --items 20000   # ~10M interactions
  python scripts/bench_import.py /tmp/bench/interactions.csv [--repeat 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recsys_spark.config import ImportJob, load_config  # noqa: E402
from recsys_spark.datasets.importer import import_csv  # noqa: E402
from recsys_spark.datasets.warehouse import Warehouse, struct_type  # noqa: E402
from recsys_spark.session import session_for  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv", help="an interactions CSV in the synthetic-ecommerce schema")
    p.add_argument("--repeat", type=int, default=1, help="runs of each, best time kept (default 1)")
    args = p.parse_args()
    config = load_config(REPO / "configs" / "synthetic-ecommerce.yaml")
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    config = config.model_copy(update={"dataset_group": config.dataset_group.model_copy(
        update={"root": str(work / "warehouse")})})
    spark = session_for(config, "bench-import")
    schema = config.schema("interactions")

    def plain(i: int) -> int:
        frame = spark.read.csv(args.csv, header=True, schema=struct_type(schema))
        frame.write.format("delta").save(str(work / f"plain-{i}"))
        return spark.read.format("delta").load(str(work / f"plain-{i}")).count()

    def validated(i: int) -> int:
        wh = Warehouse(spark, config.model_copy(update={"dataset_group": config.dataset_group.model_copy(
            update={"root": str(work / f"validated-{i}")})}))
        result = import_csv(wh, ImportJob(dataset="interactions", source=args.csv, mode="FULL"))
        return result.accepted

    timings = {}
    for name, run in (("plain copy", plain), ("recsys import", validated)):
        best, rows = float("inf"), 0
        for i in range(args.repeat):
            started = time.perf_counter()
            rows = run(i)
            best = min(best, time.perf_counter() - started)
        timings[name] = (best, rows)
    print(f"{'':16}{'rows':>12}{'seconds':>10}{'rows/s':>12}")
    for name, (seconds, rows) in timings.items():
        print(f"{name:16}{rows:>12,}{seconds:>10.1f}{rows / seconds:>12,.0f}")
    ratio = timings["recsys import"][0] / timings["plain copy"][0]
    print(f"validation + rejects cost {ratio:.2f}x the plain copy (aim: below 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
