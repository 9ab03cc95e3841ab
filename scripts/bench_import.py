#!/usr/bin/env python3
"""Benchmark: CSV import with validation and rejects against a plain Spark CSV -> Delta copy.

Both run in one Spark session on the same file, each into a fresh table; the plain copy is
``spark.read.csv(header, schema).write.format("delta")`` (no validation, no rejects, nothing kept of bad
lines). With ``--repeat N`` they alternate, copy then import, N times, so both see the same machine (others'
jobs come and go); each round's ratio is printed, then the best time of each and their ratio (aim: validation
costs less than 1.5x the copy).

The import runs as by default for a big file of valid records (one pass), and in two passes; ``--with-reject``
also times both on the same file with one invalid line at its end, the one pass's worst case: it reads to
that line before the two passes run.

  python scripts/generate_synthetic.py --out /tmp/bench --users 350000 --items 20000   # ~10M interactions
  python scripts/bench_import.py /tmp/bench/interactions.csv [--repeat 3] [--with-reject]
"""

from __future__ import annotations

import argparse
import shutil
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
    p.add_argument("--repeat", type=int, default=1, help="rounds of copy then import, best time kept (default 1)")
    p.add_argument("--with-reject", action="store_true",
                   help="also import the file with one invalid line at its end (default: off)")
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

    def validated(i: int, source: str = args.csv, one_pass: bool = True) -> int:
        wh = Warehouse(spark, config.model_copy(update={"dataset_group": config.dataset_group.model_copy(
            update={"root": str(work / f"validated-{i}-{Path(source).stem}-{one_pass}")})}))
        job = ImportJob(dataset="interactions", source=source, one_pass_min_mb=0 if one_pass else 1e12)
        return import_csv(wh, job).accepted

    runs = [("plain copy", plain), ("recsys import", validated),
            ("two passes", lambda i: validated(i, one_pass=False))]
    if args.with_reject:
        rejecting = work / "with-reject.csv"
        shutil.copyfile(args.csv, rejecting)
        with open(rejecting, "a") as f:
            f.write("u1,i1,not-a-time,view,\n")
        runs += [("reject, 1 pass", lambda i: validated(i, str(rejecting))),
                 ("reject, 2 passes", lambda i: validated(i, str(rejecting), one_pass=False))]
    timings: dict[str, list[float]] = {name: [] for name, _ in runs}
    rows = {}
    for i in range(args.repeat):
        for name, run in runs:
            started = time.perf_counter()
            rows[name] = run(i)
            timings[name].append(time.perf_counter() - started)
        print(f"round {i + 1}: " + ", ".join(f"{name} {timings[name][-1]:.1f} s" for name, _ in runs)
              + f", ratio {timings['recsys import'][-1] / timings['plain copy'][-1]:.2f}", flush=True)
    print(f"{'':16}{'rows':>12}{'seconds':>10}{'rows/s':>12}   (best of {args.repeat})")
    for name, seconds in timings.items():
        print(f"{name:16}{rows[name]:>12,}{min(seconds):>10.1f}{rows[name] / min(seconds):>12,.0f}")
    ratio = min(timings["recsys import"]) / min(timings["plain copy"])
    print(f"validation + rejects cost {ratio:.2f}x the plain copy (aim: below 1.5x)")
    for name in list(timings)[2:]:
        print(f"{name}: {min(timings[name]) / min(timings['plain copy']):.2f}x the copy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
