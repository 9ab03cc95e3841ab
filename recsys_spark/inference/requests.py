"""Batch input: the service's JSON lines, checked line by line, or every known user.

Each non-blank input line becomes one request row; a line that cannot be served keeps its text and gets
an error message instead of stopping the job. Request kinds by recipe: ``user`` (``userId``), ``related``
(``itemId``, or ``userId`` for a user query of an item model), ``ranking`` (``userId`` + ``itemList``).
Any line may carry ``filterValues`` (parameter -> the service's quoted value string).

>>> parse_line('{"userId": "42"}', "user")
('{"userId": "42"}', '42', None, None, None, None)
>>> parse_line('{"userId": 42}', "user")[-1]
'userId must be a non-empty string of at most 256 characters, got 42'
"""

from __future__ import annotations

import json

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.filters.binding import MAX_KEYS

REQUEST_SCHEMA = ("LINE_ID bigint, INPUT string, USER_ID string, QUERY_ITEM string, ITEM_LIST array<string>, "
                  "BINDING string, ERROR string")
KNOWN_FIELDS = ("userId", "itemId", "itemList", "filterValues")
MAX_ID, MAX_LIST = 256, 500
KIND = {"user-personalization": "user", "popularity-count": "user", "trending-now": "user",
        "sims": "related", "ease": "related", "personalized-ranking": "ranking"}


def parse_line(text: str, kind: str):
    """(input JSON, userId, itemId, itemList, filterValues as canonical JSON, error) for one line."""
    try:
        record = json.loads(text)
    except ValueError as e:
        return json.dumps(text), None, None, None, None, f"not valid JSON: {e}"
    if not isinstance(record, dict):
        return text, None, None, None, None, f"expected a JSON object, got {type(record).__name__}"
    error = _check(record, kind)
    if error:
        return text, None, None, None, None, error
    values = record.get("filterValues")
    return (text, record.get("userId"), record.get("itemId"), record.get("itemList"),
            json.dumps(values, sort_keys=True) if values else None, None)


def _check(record: dict, kind: str) -> str | None:
    unknown = sorted(set(record) - set(KNOWN_FIELDS))
    if unknown:
        return f"unknown field {unknown[0]!r}; the fields are {', '.join(KNOWN_FIELDS)}"
    for key in ("userId", "itemId"):
        value = record.get(key)
        if value is not None and (not isinstance(value, str) or not value or len(value) > MAX_ID):
            return f"{key} must be a non-empty string of at most {MAX_ID} characters, got {json.dumps(value)[:60]}"
    items = record.get("itemList")
    if items is not None and (not isinstance(items, list) or not all(isinstance(i, str) and i for i in items)):
        return "itemList must be a list of item ID strings"
    if items is not None and not 1 <= len(items) <= MAX_LIST:
        return f"itemList must hold 1 to {MAX_LIST} items, got {len(items)}"
    values = record.get("filterValues")
    if values is not None and (not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values())):
        return 'filterValues must be an object of strings, e.g. {"GENRE": "\\"drama\\""}'
    if values is not None and len(values) > MAX_KEYS:
        return f"filterValues has {len(values)} keys, at most {MAX_KEYS} are allowed"
    user, item = record.get("userId"), record.get("itemId")
    if kind == "user" and user is None:
        return "userId is required by this solution's recipe"
    if kind == "related" and user is None and item is None:
        return "itemId (related items) or userId (a user's recommendations) is required"
    if kind == "ranking" and (user is None or items is None):
        return "userId and itemList are required by personalized-ranking"
    if kind != "ranking" and items is not None:
        return "itemList is only read by personalized-ranking solutions"
    return None


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
