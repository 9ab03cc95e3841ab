"""Row validation against a dataset schema, shared by CSV import and JSON-lines ingestion.

Input rows hold every schema field as a string column (None for an absent or empty value) plus a
``_format_error`` column (a problem found while reading the line, e.g. a wrong column count; None when
the line was well-formed). :func:`validate` adds the typed values, keeps the strings (as ``_str_<FIELD>``)
and flags invalid rows in ``_bad``; :func:`reason` is the message of an invalid row, every problem found,
``; ``-separated. The flag is a cheap boolean evaluated for every row; the message is built only for the
rejected rows it is selected on. Everything runs as Spark SQL expressions in the JVM.

>>> schema = config.schema("interactions")                                              # doctest: +SKIP
>>> checked = validate(rows, schema, "interactions")                                    # doctest: +SKIP
>>> checked.where(BAD).select("_line", reason(schema, "interactions")).show()           # doctest: +SKIP
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys_spark.schema import DatasetSchema, SchemaField

FORMAT_ERROR = "_format_error"
BAD = "_bad"
SPARK_TYPE = {"int": "INT", "long": "BIGINT", "float": "FLOAT", "double": "DOUBLE", "boolean": "BOOLEAN",
              "string": "STRING"}
EPOCH_FIELDS = ("TIMESTAMP", "CREATION_TIMESTAMP")
# Epoch seconds stay below this until the year 5138; a value above it is almost surely milliseconds.
MAX_EPOCH_SECONDS = 10 ** 11


def raw(f: SchemaField) -> Column:
    """The field's value as read (a string), kept beside the typed value."""
    return F.col(f"`_str_{f.name}`")


def typed(f: SchemaField) -> Column:
    return F.expr(f"try_cast(`_str_{f.name}` AS {SPARK_TYPE[f.base_type]})") if f.base_type != "string" else raw(f)


def _shown(c: Column) -> Column:
    """The value quoted and cut to 40 characters, for a message."""
    return F.concat(F.lit("'"), F.substring(c, 1, 40), F.when(F.length(c) > 40, F.lit("...")).otherwise(F.lit("")),
                    F.lit("'"))


def _no_padding(c: Column) -> Column:
    """An integer the cast read (which trims white space) is as written when it starts with a sign or digit
    and ends with a digit: the same rows as the pattern ``[+-]?[0-9]+``, for a sixth of the validation's time
    (a regular expression per value)."""
    first, last = F.substring(c, 1, 1), F.substring(c, -1, 1)
    return (((first >= "0") & (first <= "9")) | (first == "+") | (first == "-")) & (last >= "0") & (last <= "9")


def _checks(f: SchemaField, limit: int | None) -> list[tuple[Column, list[str | Column]]]:
    """(condition that the value is wrong, message parts) for one field whose values may have up to ``limit``
    characters."""
    value, present = typed(f), raw(f).isNotNull()
    out: list[tuple[Column, list[str | Column]]] = []
    if not f.nullable:
        out.append((~present, [f"{f.name} is missing or empty"]))
    if f.base_type in ("int", "long"):
        out.append((present & (value.isNull() | ~_no_padding(raw(f))),
                    [f"{f.name} is not a {f.base_type} integer: ", _shown(raw(f))]))
    elif f.base_type in ("float", "double"):
        out.append((present & (value.isNull() | F.isnan(value) | (F.abs(value) == float("inf"))),
                    [f"{f.name} is not a finite {f.base_type}: ", _shown(raw(f))]))
    elif f.base_type == "boolean":
        out.append((present & ~raw(f).isin("true", "false"),
                    [f"{f.name} is not a boolean (true or false): ", _shown(raw(f))]))
    if f.name in EPOCH_FIELDS and f.base_type == "long":
        out.append((present & (value >= MAX_EPOCH_SECONDS),
                    [f"{f.name} looks like milliseconds; epoch seconds expected: ", raw(f)]))
        out.append((present & (value < 0), [f"{f.name} is negative: ", raw(f)]))
    if limit:
        out.append((present & (F.length(raw(f)) > limit),
                    [f"{f.name} is longer than {limit} characters (", F.length(raw(f)).cast("string"), ")"]))
    return out


def _all_checks(schema: DatasetSchema, dataset: str) -> list[tuple[Column, list[str | Column]]]:
    return [check for f in schema.fields for check in _checks(f, schema.max_length(f.name, dataset))]


def validate(rows: DataFrame, schema: DatasetSchema, dataset: str) -> DataFrame:
    """Typed schema columns, the strings as ``_str_<FIELD>``, carried columns unchanged, and ``_bad``."""
    names = set(schema.names)
    carried = [c for c in rows.columns if c not in names]
    strings = rows.select(*[F.col(f"`{n}`").alias(f"_str_{n}") for n in schema.names], *carried)
    bad = F.col(FORMAT_ERROR).isNotNull()
    for condition, _ in _all_checks(schema, dataset):
        bad = bad | F.coalesce(condition, F.lit(False))
    return strings.select(*[typed(f).alias(f.name) for f in schema.fields], "*", bad.alias(BAD))


def convert(rows: DataFrame, schema: DatasetSchema) -> DataFrame:
    """Rows that an earlier :func:`validate` of the same input found valid, with their fields typed like
    :func:`validate`'s (the checks are not evaluated again), carried columns unchanged."""
    carried = [c for c in rows.columns if c not in set(schema.names)]
    strings = rows.select(*[F.col(f"`{n}`").alias(f"_str_{n}") for n in schema.names], *carried)
    return strings.select(*[typed(f).alias(f.name) for f in schema.fields], *carried)


def reason(schema: DatasetSchema, dataset: str) -> Column:
    """Why a row of :func:`validate`'s output is bad: the format error, else every failed check."""
    messages = [F.when(condition, F.concat(*[F.lit(p) if isinstance(p, str) else p for p in parts]))
                for condition, parts in _all_checks(schema, dataset)]
    found = F.concat_ws("; ", *messages)  # skips the None of checks that passed
    return F.coalesce(F.col(FORMAT_ERROR), F.when(found != "", found))
