#!/usr/bin/env python3
"""Benchmark: the batch job's commit phase on S3, before (folder moves) and after (a manifest written last).

Both protocols write the same JSON lines (the service's format, 25 items with scores per line) to a real S3
API (moto's server on 127.0.0.1, through S3A, as the batch job does), twice each: a first run, then a rerun
that replaces that output, the usual case of a scheduled job. For each run it prints the write and the
commit times; then the commit ratio.

* before: the protocol this replaced (kept below as the baseline): lines to ``<output>.staging-<run>``, then
  the previous output renamed aside, the staging folder renamed in, ``_SUCCESS``, the previous deleted. On
  S3 each rename copies every object, then deletes it.
* after: :mod:`recsys_spark.inference.output`: lines to ``<output>/runs/<run>/``, then ``_metrics.json``,
  the manifest and ``_SUCCESS`` (three small PUTs), and old run folders deleted.

  python scripts/bench_commit.py [--lines 200000] [--partitions 8]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recsys_spark import storage  # noqa: E402
from recsys_spark.inference import output as out  # noqa: E402


def legacy_write_staging(spark, lines, output: str, run_id: str) -> str:
    """The protocol before: the lines into a staging folder beside the output."""
    staging = f"{output}.staging-{run_id}"
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    conf.set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
    try:
        lines.write.mode("errorifexists").text(staging)
    finally:
        conf.set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "true")
    return staging


def legacy_commit(spark, staging: str, output: str, run_id: str, metrics: dict) -> None:
    """The protocol before: metrics into staging, the previous output moved aside, staging moved in."""
    storage.write_text(spark, f"{staging}/_metrics.json", json.dumps(metrics))
    previous = f"{output}.previous-{run_id}"
    had_output = storage.path_exists(spark, output)
    if had_output:
        storage.rename(spark, output, previous)
    storage.rename(spark, staging, output)
    storage.write_text(spark, f"{output}/_SUCCESS", "")
    if had_output:
        storage.delete_path(spark, previous)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--partitions", type=int, default=8, help="part files per run (default 8)")
    args = p.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer
    from pyspark.sql import functions as F

    from recsys_spark.config import S3Settings
    from recsys_spark.session import get_spark

    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
        local = tempfile.mkdtemp(prefix="bench-commit-")
        spark = get_spark("bench-commit", master="local[2]", s3=S3Settings(
            endpoint=endpoint, region="us-east-1", path_style_access=True), conf={
            "spark.ui.enabled": False, "spark.local.dir": local, "spark.sql.shuffle.partitions": 2,
            "spark.hadoop.fs.s3a.multiobjectdelete.enable": False})  # moto has no bulk delete
        items = F.transform(F.sequence(F.lit(0), F.lit(24)), lambda k: F.concat(F.lit("item-"), ((F.col("id") * 7 + k * 131) % 20000).cast("string")))
        scores = F.transform(F.sequence(F.lit(0), F.lit(24)), lambda k: F.round(F.lit(1.0) / (k + 1) + F.rand(7) / 1000, 6))
        lines = spark.range(args.lines, numPartitions=args.partitions).select(F.to_json(F.struct(
            F.struct(F.concat(F.lit("user-"), F.col("id").cast("string")).alias("userId")).alias("input"),
            F.struct(items.alias("recommendedItems"), scores.alias("scores")).alias("output"),
            F.lit(None).cast("string").alias("error"))).alias("value")).cache()
        size = lines.select(F.sum(F.length("value"))).first()[0]
        print(f"{args.lines:,} lines, {size / 2**20:.1f} MiB, {args.partitions} part files, S3 server at {endpoint}")

        results: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for name in ("before", "after"):
            output = f"s3a://bench/{name}/weekly"
            for run in (1, 2):
                run_id = f"batch-bench-{run}"
                metrics = {"run_id": run_id, "users_in": args.lines}
                started = time.perf_counter()
                if name == "before":
                    staging = legacy_write_staging(spark, lines, output, run_id)
                else:
                    out.recover(spark, output)
                    out.write_run(spark, lines, output, run_id)
                written = time.perf_counter()
                if name == "before":
                    legacy_commit(spark, staging, output, run_id, metrics)
                else:
                    out.commit_output(spark, output, run_id, metrics)
                done = time.perf_counter()
                results[name].append((written - started, done - written))
                print(f"{name:6} run {run} ({'replaces the first' if run == 2 else 'new output'}): "
                      f"write {written - started:6.2f} s, commit {done - written:6.2f} s")
            count = (spark.read.text(output) if name == "before" else out.read_output(spark, output)).count()
            assert count == args.lines, (name, count)
        for run, label in ((0, "new output"), (1, "rerun replacing an output")):
            before, after = results["before"][run][1], results["after"][run][1]
            print(f"commit, {label}: before {before:.2f} s, after {after:.2f} s: {before / after:.1f}x faster")
        spark.stop()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
