#!/usr/bin/env python3
"""Benchmark: importing a big CSV whose quoted values span lines, against Spark's own multiLine CSV reader.

Writes (seeded) an items file with Python's csv module: every item has a quoted description, a third of them
over several lines, with commas and doubled quotes. Then, in one Spark session: the validating import (how
many tasks read the file, how many fragments went to the driver, seconds) and
``spark.read.csv(multiLine=True, escape='"') -> Delta`` (how many tasks, seconds), which cannot split a file.

  python scripts/bench_csv_segments.py --rows 1500000 [--split-mb 32]
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pyspark.sql import functions as F  # noqa: E402

from recsys_spark.config import ImportJob, load_config  # noqa: E402
from recsys_spark.core.kernels.csvrecords import HEAD, LOOSE, TAIL  # noqa: E402
from recsys_spark.datasets.csv_source import KIND, CsvSource  # noqa: E402
from recsys_spark.datasets.importer import import_csv  # noqa: E402
from recsys_spark.datasets.warehouse import Warehouse, struct_type  # noqa: E402
from recsys_spark.session import session_for  # noqa: E402

CONFIG = """
dataset_group:
  name: bench
  root: {root}
  schemas:
    items:
      fields:
        - {{name: ITEM_ID, type: string}}
        - {{name: CATEGORY, type: string, categorical: true}}
        - {{name: DESCRIPTION, type: ["null", string], textual: true}}
        - {{name: PRICE, type: double}}
spark:
  conf:
    spark.driver.memory: 4g
"""
WORDS = "soft warm light red blue steel oak linen cotton fresh classic compact large small premium".split()


def write_items(path: Path, rows: int) -> None:
    rng = random.Random(16)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["ITEM_ID", "CATEGORY", "DESCRIPTION", "PRICE"])
        for i in range(rows):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
            if i % 3 == 0:
                words = words.replace(" soft ", ' "soft",\nreally ').replace(" oak ", "\n\noak, ")
            out.writerow([f"i{i}", rng.choice(WORDS), words, f"{rng.uniform(1, 500):.2f}"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_500_000)
    p.add_argument("--split-mb", type=int, default=128, help="spark.sql.files.maxPartitionBytes in MB")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-segments-"))
    (work / "bench.yaml").write_text(CONFIG.format(root=work / "warehouse"))
    config = load_config(work / "bench.yaml")
    source = work / "items.csv"
    write_items(source, args.rows)
    print(f"{source}: {args.rows:,} items, {source.stat().st_size / 1e6:,.0f} MB", flush=True)
    spark = session_for(config, "bench-segments")
    spark.conf.set("spark.sql.files.maxPartitionBytes", f"{args.split_mb}m")
    schema = config.schema("items")

    started = time.perf_counter()
    result = import_csv(Warehouse(spark, config), ImportJob(dataset="items", source=str(source)))
    ours = time.perf_counter() - started
    segments = CsvSource(spark, str(source), schema).segments([f"file:{source}"])
    fragments = segments.where(F.col(KIND).isin(HEAD, TAIL, LOOSE)).count()
    print(f"import: {result.accepted:,} items, {result.rejected} rejected, {ours:.1f} s; "
          f"{segments.rdd.getNumPartitions()} tasks, {fragments} fragment lines read in the driver", flush=True)

    started = time.perf_counter()
    frame = spark.read.csv(str(source), header=True, multiLine=True, escape='"', schema=struct_type(schema))
    frame.write.format("delta").save(str(work / "multiline"))
    theirs = time.perf_counter() - started
    print(f"spark.read.csv(multiLine=True) -> Delta: {frame.rdd.getNumPartitions()} task(s), {theirs:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
