"""`recsys-spark doctor`: proves the installation works end to end on this machine or cluster.

It starts (or reuses) the Spark session, reports versions, and round-trips a small Delta table: write,
append, read the latest version and the first one by time travel, then deletes it. With a config the table
goes under ``<root>/_doctor/``, which also proves the warehouse root (a folder or an S3 bucket) is writable.
"""

from __future__ import annotations

import tempfile
import time
import uuid

from recsys_spark.config import load_config
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
    if not ok:
        raise RuntimeError("Delta round trip returned wrong counts:\n" + "\n".join(lines))
    return "recsys-spark doctor: all good\n" + "\n".join(lines)
