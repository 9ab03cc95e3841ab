"""The fixed cost of a local Spark application's start, with and without the install step's class-data
archive (recsys_spark.classcache), measured in one run, alternating, each in a fresh process: the session's
start, then a first Delta write, MERGE and aggregated read (what every job of the package begins with).

    python scripts/bench_startup.py --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

WORKLOAD = """
import os, sys, tempfile, time
started = time.perf_counter()
sys.path.insert(0, sys.argv[2])
os.environ["PYSPARK_PYTHON"] = sys.executable
from recsys_spark.session import local_settings
from pyspark.sql import SparkSession
settings = local_settings("local[2]", {"spark.ui.enabled": "false"})
if sys.argv[1] == "without":
    settings["spark.driver.extraJavaOptions"] = settings["spark.driver.extraJavaOptions"].split(" -XX:")[0]
builder = SparkSession.builder.appName("startup")
for key, value in settings.items():
    builder = builder.config(key, str(value))
spark = builder.getOrCreate()
up = time.perf_counter()
from delta.tables import DeltaTable
path = tempfile.mkdtemp() + "/t"
spark.range(1000).selectExpr("id", "cast(id % 7 as string) AS s").write.format("delta").save(path)
DeltaTable.forPath(spark, path).alias("t").merge(spark.range(10).selectExpr("id", "'x' AS s").alias("u"),
                                                 "t.id = u.id").whenMatchedUpdateAll().execute()
spark.read.format("delta").load(path).groupBy("s").count().collect()
print(f"{up - started:.3f} {time.perf_counter() - started:.3f}")
spark.stop()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from recsys_spark import classcache

    archive = classcache.archive_path()
    if not archive.is_file():
        sys.exit(f"no class-data archive at {archive}: run `python -m recsys_spark.classcache` (the install step)")
    times: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
    for _ in range(args.repeat):
        for case in times:
            out = subprocess.run([sys.executable, "-c", WORKLOAD, case, str(REPO)], capture_output=True, text=True,
                                 check=True).stdout.split()
            times[case].append((float(out[-2]), float(out[-1])))
            print(f"{case:8} start {times[case][-1][0]:6.2f} s, with the first Delta jobs {times[case][-1][1]:6.2f} s",
                  flush=True)
    median = {case: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts))
              for case, ts in times.items()}
    print(f"\nmedians of {args.repeat}: start {median['without'][0]:.2f} -> {median['with'][0]:.2f} s "
          f"({median['without'][0] / median['with'][0]:.2f}x); start and first Delta jobs {median['without'][1]:.2f} "
          f"-> {median['with'][1]:.2f} s ({median['without'][1] / median['with'][1]:.2f}x)")


if __name__ == "__main__":
    main()
