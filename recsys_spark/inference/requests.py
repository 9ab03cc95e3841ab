"""Batch input on Spark: the service's JSON-lines files parsed line by line with the core's
:func:`~recsys_spark.core.requests.parse_line`, or one request per known user.

>>> read_requests(spark, "s3://bucket/in/users.jsonl", "user").columns          # doctest: +SKIP
['LINE_ID', 'INPUT', 'USER_ID', 'QUERY_ITEM', 'ITEM_LIST', 'BINDING', 'ERROR']
"""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.core.requests import parse_line

REQUEST_SCHEMA = ("LINE_ID bigint, INPUT string, USER_ID string, QUERY_ITEM string, ITEM_LIST array<string>, "
                  "BINDING string, ERROR string")


def read_requests(spark, source: str, kind: str) -> DataFrame:
    """Every non-blank line of the JSON-lines file(s) at ``source`` as a request row (REQUEST_SCHEMA)."""
    lines = (spark.read.text(source).where(F.trim("value") != "")
             .withColumn("LINE_ID", F.monotonically_increasing_id()))

    def parse(batches):
        for batch in batches:
            ids = batch.column("LINE_ID")
            parsed = [parse_line(text, kind) for text in batch.column("value").to_pylist()]
            columns = list(zip(*parsed)) if parsed else [[]] * 6
            yield pa.record_batch([ids, *(pa.array(c, t) for c, t in zip(columns, (
                pa.string(), pa.string(), pa.string(), pa.list_(pa.string()), pa.string(), pa.string())))],
                names=["LINE_ID", "INPUT", "USER_ID", "QUERY_ITEM", "ITEM_LIST", "BINDING", "ERROR"])

    return lines.select("LINE_ID", "value").mapInArrow(parse, REQUEST_SCHEMA)


def all_users(users: DataFrame) -> DataFrame:
    """One ``{"userId": ...}`` request per row of ``users`` (USER_ID; other columns are kept)."""
    return users.select(*[c for c in users.columns if c != "USER_ID"],
        F.monotonically_increasing_id().alias("LINE_ID"),
        F.to_json(F.struct(F.col("USER_ID").alias("userId"))).alias("INPUT"), "USER_ID",
        F.lit(None).cast("string").alias("QUERY_ITEM"), F.lit(None).cast("array<string>").alias("ITEM_LIST"),
        F.lit(None).cast("string").alias("BINDING"), F.lit(None).cast("string").alias("ERROR"))
