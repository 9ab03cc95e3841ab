"""`recsys-spark doctor`: proves the installation works end to end on this machine or cluster.

It starts (or reuses) the Spark session, reports versions, round-trips a small Delta table (write, append,
read the latest version and the first one by time travel, then delete it; with a config under
``<root>/_doctor/``, which proves the warehouse root, a folder or an S3 bucket, is readable and writable),
and runs a Python task on every executor that imports what the jobs import there (the package, numpy,
scipy, pyarrow, pandas, delta.tables, pyspark): their versions are printed beside the driver's, and a
missing module or a version that differs from the driver's fails the check, named.
"""

from __future__ import annotations

import tempfile
import time
import uuid

from recsys_spark import probe
from recsys_spark.config import load_config
from recsys_spark.errors import UserError
from recsys_spark.session import get_spark, session_for, versions
from recsys_spark.storage import delete_path


def delta_round_trip(spark, location: str) -> dict[str, int]:
    """Write 100 rows as a Delta table at ``location``, append 50, and read both versions back.

    Returns ``{"latest": 150, "version_0": 100}`` when Delta works; the table is left in place.
    """
    spark.range(100).selectExpr("id", "id * 2 AS doubled").write.format("delta").save(location)
    spark.range(100, 150).selectExpr("id", "id * 2 AS doubled").write.format("delta").mode("append").save(location)
    reader = spark.read.format("delta")
    return {"latest": reader.load(location).count(),
            "version_0": reader.option("versionAsOf", 0).load(location).count()}


def probe_executors(spark, rounds: int = 3) -> dict[str, dict[str, str]]:
    """``{executor: probe.environment() there}`` for every executor a Python task reached.

    Each round runs one task per core of the application; all executors idle and registered take tasks at
    once, so each is reached. Under dynamic allocation executors may still be arriving: a few rounds run
    until every registered executor has answered.
    """
    from pyspark import cloudpickle

    # Shipped by value: the probe must run where the package itself may be missing.
    cloudpickle.register_pickle_by_value(probe)
    try:
        sc, seen = spark.sparkContext, {}
        for _ in range(rounds):
            slots = max(sc.defaultParallelism, executor_count(sc), 1)
            seen.update(sc.parallelize(range(slots), slots).mapPartitions(probe.report_partition).collect())
            if len(seen) >= executor_count(sc):
                break
        return seen
    finally:
        cloudpickle.unregister_pickle_by_value(probe)


def executor_count(sc) -> int:
    """Executors registered now (1 in local mode, where the driver's JVM runs the tasks)."""
    registered = sc._jsc.sc().getExecutorMemoryStatus().size()  # the driver's block manager included
    return 1 if sc.master.startswith("local") else registered - 1


def python_table(driver: dict[str, str], executors: dict[str, dict[str, str]]) -> list[str]:
    """The versions each executor sees beside the driver's, one row per module, then each interpreter."""
    names = sorted(executors)
    keys = [k for k in driver if k not in probe.PROCESS_KEYS]
    columns = [["", *keys], ["driver", *(driver[k] for k in keys)],
               *([f"executor {n}", *(executors[n].get(k, "-") for k in keys)] for n in names)]
    widths = [max(len(v) for v in column) + 2 for column in columns]
    rows = ["  " + "".join(column[i].ljust(w) for column, w in zip(columns, widths)).rstrip()
            for i in range(len(keys) + 1)]
    rows.append(f"  python on the driver: {driver['interpreter']}")
    rows += [f"  python on executor {n}: {executors[n]['interpreter']}" for n in names]
    return rows


def run_doctor(config_path: str | None = None) -> str:
    started = time.perf_counter()
    if config_path:
        config = load_config(config_path)
        spark = session_for(config, "recsys-spark doctor")
        base = config.root.rstrip("/") + "/_doctor"
    else:
        spark = get_spark("recsys-spark doctor")
        base = tempfile.mkdtemp(prefix="recsys-spark-doctor-")
    session_seconds = time.perf_counter() - started
    location = f"{base}/{uuid.uuid4().hex}"
    started = time.perf_counter()
    try:
        counts = delta_round_trip(spark, location)
    finally:
        delete_path(spark, location)
    ok = counts == {"latest": 150, "version_0": 100}
    lines = [f"  {k:<8}{v}" for k, v in versions(spark).items()]
    lines.append(f"  session {session_seconds:.1f} s")
    lines.append(f"  delta   {'ok' if ok else 'WRONG'}: wrote, appended and time-travelled a table at {location} "
                 f"({counts['latest']} rows, version 0 has {counts['version_0']}) in "
                 f"{time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    driver, executors = probe.environment(), probe_executors(spark)
    problems = probe.mismatches(driver, executors)
    lines.append(f"  python  {len(executors)} executor(s) ran a Python task in {time.perf_counter() - started:.1f} s"
                 f"; {'mismatches: none' if not problems else 'PROBLEMS:'}")
    lines += [f"    {p}" for p in problems]
    lines += python_table(driver, executors)
    if not ok:
        raise RuntimeError("Delta round trip returned wrong counts:\n" + "\n".join(lines))
    if problems:  # the cluster's setup, which the user fixes: the whole report, not just a first line
        raise UserError("doctor: the executors' Python differs from the driver's:\n" + "\n".join(lines))
    return "recsys-spark doctor: all good\n" + "\n".join(lines)
