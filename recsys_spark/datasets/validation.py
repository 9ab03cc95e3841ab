"""Row validation against a dataset schema, shared by CSV import and JSON-lines ingestion.

Input rows hold every schema field as a string column (None for an absent or empty value) plus a
``_format_error`` column (a problem found while reading the line, e.g. a wrong column count; None when
the line was well-formed). :func:`validate` adds the typed values and ``_reason``: None for a valid row,
otherwise every problem found, ``; ``-separated. Everything runs as Spark SQL expressions in the JVM.

>>> checked = validate(rows, config.schema("interactions"))                    # doctest: +SKIP
>>> checked.where("_reason IS NOT NULL").select("_line", "_reason").show()     # doctest: +SKIP
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys_spark.schema import MAX_CATEGORICAL_LENGTH, MAX_ID_LENGTH, DatasetSchema

FORMAT_ERROR = "_format_error"
REASON = "_reason"
SPARK_TYPE = {"int": "INT", "long": "BIGINT", "float": "FLOAT", "double": "DOUBLE", "boolean": "BOOLEAN",
              "string": "STRING"}
ID_FIELDS = ("USER_ID", "ITEM_ID")
EPOCH_FIELDS = ("TIMESTAMP", "CREATION_TIMESTAMP")
# Epoch seconds stay below this until the year 5138; a value above it is almost surely milliseconds.
MAX_EPOCH_SECONDS = 10 ** 11


def _shown(c: Column) -> Column:
    """The value quoted and cut to 40 characters, for a reason message."""
    return F.concat(F.lit("'"), F.substring(c, 1, 40), F.when(F.length(c) > 40, F.lit("...")).otherwise(F.lit("")),
                    F.lit("'"))


def _problem(condition: Column, *parts: str | Column) -> Column:
    return F.when(condition, F.concat(*[F.lit(p) if isinstance(p, str) else p for p in parts]))


def validate(rows: DataFrame, schema: DatasetSchema) -> DataFrame:
    """Typed schema columns (replacing the strings), carried columns unchanged, and ``_reason``."""
    problems: list[Column] = []
    typed: dict[str, Column] = {}
    for f in schema.fields:
        raw = F.col(f"`{f.name}`")
        present = raw.isNotNull()
        value = F.expr(f"try_cast(`{f.name}` AS {SPARK_TYPE[f.base_type]})") if f.base_type != "string" else raw
        if not f.nullable:
            problems.append(_problem(~present, f"{f.name} is missing or empty"))
        if f.base_type in ("int", "long"):
            bad = present & (~raw.rlike(r"^[+-]?[0-9]+$") | value.isNull())
            problems.append(_problem(bad, f"{f.name} is not a {f.base_type} integer: ", _shown(raw)))
        elif f.base_type in ("float", "double"):
            bad = present & (value.isNull() | F.isnan(value) | (F.abs(value) == float("inf")))
            problems.append(_problem(bad, f"{f.name} is not a finite {f.base_type}: ", _shown(raw)))
        elif f.base_type == "boolean":
            problems.append(_problem(present & ~raw.isin("true", "false"),
                                     f"{f.name} is not a boolean (true or false): ", _shown(raw)))
        if f.name in EPOCH_FIELDS and f.base_type == "long":
            problems.append(_problem(present & (value >= MAX_EPOCH_SECONDS),
                                     f"{f.name} looks like milliseconds; epoch seconds expected: ", raw))
            problems.append(_problem(present & (value < 0), f"{f.name} is negative: ", raw))
        limit = MAX_ID_LENGTH if f.name in ID_FIELDS else MAX_CATEGORICAL_LENGTH if f.categorical else None
        if limit:
            problems.append(_problem(present & (F.length(raw) > limit),
                                     f"{f.name} is longer than {limit} characters (", F.length(raw).cast("string"),
                                     F.lit(")")))
        typed[f.name] = value
    found = F.array_compact(F.array(*problems))
    reason = F.coalesce(F.col(FORMAT_ERROR), F.when(F.size(found) > 0, F.array_join(found, "; ")))
    carried = [c for c in rows.columns if c not in typed and c != FORMAT_ERROR]
    return rows.select(*[typed[f.name].alias(f.name) for f in schema.fields], *carried, reason.alias(REASON))
