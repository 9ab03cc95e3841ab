"""Cost from the executors that ran: a run on the standalone cluster under dynamic allocation, whose
executors come and go inside the run, is billed for the cores it held when it held them."""

from __future__ import annotations

import json

import pytest

from conftest import REPO

pytestmark = pytest.mark.cluster

# Runs as the driver under spark-submit. Dynamic allocation with shuffle tracking (no external shuffle
# service on a standalone worker), one core per executor, from none to two and back to none. A thread
# counts the live executors every 0.2 s through another API (the status tracker's executor infos, fed by
# the block managers), for an independent integral of the cores held.
JOB = """
import json, sys, threading, time
sys.path.insert(0, sys.argv[1])
from pyspark.sql import SparkSession
from recsys_spark.runmetrics import RunMetrics

spark = (SparkSession.builder.appName("recsys-spark dynamic allocation")
         .config("spark.dynamicAllocation.enabled", "true")
         .config("spark.dynamicAllocation.shuffleTracking.enabled", "true")
         .config("spark.dynamicAllocation.minExecutors", "0")
         .config("spark.dynamicAllocation.initialExecutors", "0")
         .config("spark.dynamicAllocation.maxExecutors", "2")
         .config("spark.dynamicAllocation.executorIdleTimeout", "1s")
         .config("spark.dynamicAllocation.schedulerBacklogTimeout", "1s")
         .config("spark.executor.cores", "1").getOrCreate())
tracker = spark.sparkContext._jsc.sc().statusTracker()
live = lambda: len(tracker.getExecutorInfos()) - 1  # the driver is listed too
samples, stop = [], threading.Event()

def sample():
    while not stop.wait(0.2):
        samples.append((time.time(), live()))

thread = threading.Thread(target=sample, daemon=True)
thread.start()
with RunMetrics(spark, "dynamic") as metrics:
    started = time.time()
    spark.range(6, numPartitions=6).selectExpr("java_method('java.lang.Thread', 'sleep', cast(2000 as bigint))").collect()
    peak = max(n for _, n in samples)
    deadline = time.time() + 120
    while live() > 0 and time.time() < deadline:  # idle: dynamic allocation gives the executors back
        time.sleep(0.2)
    time.sleep(1)
    ended = time.time()
stop.set()
thread.join()
inside = [(t, n) for t, n in samples if started <= t <= ended]
sampled = sum(n * (b[0] - a[0]) for a, b in zip(inside, inside[1:]) for n in [a[1]])
print("RESULT " + json.dumps({"wall_seconds": metrics.wall_seconds, "sampled_core_seconds": sampled,
                              "sampled_peak": peak, "left": live(), **metrics.cost(0.048),
                              "allocated_core_seconds": metrics.allocated_core_seconds, "peak": metrics.cores}))
spark.stop()
"""


def test_dynamic_allocation_is_billed_for_the_executors_that_ran(cluster, tmp_path):
    job = tmp_path / "dynamic_job.py"
    job.write_text(JOB)
    result = cluster.submit(job, str(REPO), timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    m = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])
    print(f"allocated {m['allocated_core_seconds']:.1f} core-s (sampled {m['sampled_core_seconds']:.1f}) against "
          f"wall {m['wall_seconds']:.1f} s x {m['peak']} cores = {m['wall_seconds'] * m['peak']:.1f} core-s")
    assert m["cores_basis"] == "executors" and m["left"] == 0
    assert m["executors"] >= 2 and m["peak"] == m["sampled_peak"] == 2
    held, wall_x_cores = m["allocated_core_seconds"], m["wall_seconds"] * m["peak"]
    # Executors started after the run began and were gone before it ended: well under wall x peak cores.
    assert 0 < held < 0.85 * wall_x_cores
    assert abs(held - m["sampled_core_seconds"]) <= 0.2 * held + 1.5
    assert m["allocated_core_hours"] == pytest.approx(held / 3600, rel=1e-6)
