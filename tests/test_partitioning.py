"""``by_key``: every row of a key in one partition, even where Spark drops a plain repartition."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from recsys_spark.partitioning import by_key


@pytest.fixture
def adaptive_broadcast(spark):
    """A join planned as a sort-merge join on USER_ID (hash-partitioned in 4, the repartition's count) that
    adaptive execution turns into a broadcast join reading its shuffle locally: the situation of a batch
    job's filter lists at 6 million interactions."""
    settings = {"spark.sql.shuffle.partitions": "4", "spark.sql.autoBroadcastJoinThreshold": "1",
                "spark.sql.adaptive.autoBroadcastJoinThreshold": "10MB", "spark.sql.adaptive.enabled": "true",
                "spark.sql.adaptive.localShuffleReader.enabled": "true",
                # As with large data: the local read in several tasks, not coalesced into one.
                "spark.sql.adaptive.coalescePartitions.enabled": "false"}
    before = {k: spark.conf.get(k, None) for k in settings}
    for k, v in settings.items():
        spark.conf.set(k, v)
    yield
    for k, v in before.items():
        spark.conf.unset(k) if v is None else spark.conf.set(k, v)


def tasks_per_user(frame) -> dict[str, int]:
    """How many tasks of a mapInArrow over ``frame`` saw each USER_ID."""
    from pyspark import TaskContext

    def seen(batches):
        users = set()
        for b in batches:
            users.update(b.column(0).to_pylist())
        part = TaskContext.get().partitionId()
        yield pa.record_batch([pa.array(sorted(users)), pa.array([part] * len(users), pa.int32())],
                              names=["USER_ID", "TASK"])

    tasks: dict[str, set[int]] = {}
    for r in frame.select("USER_ID").mapInArrow(seen, "USER_ID string, TASK int").collect():
        tasks.setdefault(r.USER_ID, set()).add(r.TASK)
    return {user: len(seen_in) for user, seen_in in tasks.items()}


def test_by_key_keeps_a_key_in_one_task_where_a_plain_repartition_splits_it(spark, adaptive_broadcast):
    events = spark.range(40_000).select((F.col("id") % 1_000).cast("string").alias("USER_ID"), "id")
    wanted = spark.range(0, 1_000, 2).select(F.col("id").cast("string").alias("USER_ID")).distinct()
    joined = events.join(wanted, "USER_ID", "left_semi")
    plain = tasks_per_user(joined.repartition(4, "USER_ID"))
    # The hazard itself, on this Spark: a plain repartition leaves users split over tasks.
    assert max(plain.values()) > 1
    kept = tasks_per_user(by_key(joined, 4, "USER_ID"))
    assert len(kept) == 500 and set(kept.values()) == {1}


def test_code_that_reads_whole_partitions_partitions_through_by_key():
    from conftest import REPO

    direct = [f"{p.relative_to(REPO)}:{n}" for p in (REPO / "recsys_spark").rglob("*.py") if p.name != "partitioning.py"
              for n, line in enumerate(p.read_text().splitlines(), 1) if ".repartition(" in line]
    assert not direct, f"repartition outside recsys_spark/partitioning.py (use by_key): {direct}"
