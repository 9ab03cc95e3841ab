"""Partitions that hold every row of a key, for code that reads whole partitions (``mapInArrow``).

``frame.repartition(n, "USER_ID")`` alone does not promise that. When the rows come out of a join on
USER_ID with ``n`` shuffle partitions, Spark drops the repartition as redundant (the join's output is
already hash-partitioned that way); adaptive execution may then turn that join into a broadcast join that
reads its shuffle locally, and a key's rows end up in several tasks. Found at 6 million interactions with
``spark.sql.shuffle.partitions`` equal to the batch job's scoring partitions: users' filter lists computed in
two tasks, and their batch lines written twice. Partitioning by a hash of the key, which no other operator
produces, keeps the shuffle.

>>> by_key(events, 8, "USER_ID").mapInArrow(per_user_blocks, "BLOCK binary")   # doctest: +SKIP
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def by_key(frame: DataFrame, partitions: int, key: str | Column) -> DataFrame:
    """``frame`` in ``partitions`` partitions, all rows with the same ``key`` (a column name or expression)
    in one of them."""
    return frame.repartition(partitions, F.xxhash64(F.col(key) if isinstance(key, str) else key))
