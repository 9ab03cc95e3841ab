"""Reading CSV sources line by line so that no line is lost: every data line becomes one row holding the raw
line, its file, the schema fields as strings, and a format error when the line is malformed.

Why not Spark's CSV reader directly: its permissive mode silently pads short rows and drops extra columns.
Here each file's header maps its columns to schema fields by name (any order, per file), each line is parsed
with ``from_csv`` (quote ``"``, escape ``\\``, the managed service's convention) and its columns are counted
outside quotes, so a wrong column count or unbalanced quotes is a reason, not a guess.
"""

from __future__ import annotations

import csv
from collections import defaultdict

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.datasets.validation import FORMAT_ERROR
from recsys_spark.errors import UserError
from recsys_spark.schema import DatasetSchema
from recsys_spark.storage import list_files, read_first_line

LINE, FILE, ORDER = "_line", "_file", "_order"
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")


def parse_header(line: str) -> list[str]:
    return next(csv.reader([line.lstrip("\ufeff")], escapechar="\\", doublequote=False), [])


def check_header(source: str, header: list[str], schema: DatasetSchema, allow_extra: bool) -> list[str]:
    """Problems of one file's header: duplicate or unknown columns, required fields missing."""
    problems = []
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        problems.append(f"duplicate columns {', '.join(duplicates)}")
    missing = [f.name for f in schema.fields if not f.nullable and f.name not in header]
    if missing:
        problems.append(f"missing required columns {', '.join(missing)}")
    unknown = [c for c in header if schema.field(c) is None]
    if unknown and not allow_extra:
        problems.append(f"columns not in the schema: {', '.join(unknown)} (set allow_extra_columns: true on the "
                        "import to ignore them)")
    return [f"{source}: {p}" for p in problems]


def read_csv(spark: SparkSession, source: str, schema: DatasetSchema, allow_extra: bool = False) -> DataFrame:
    """Rows of every data line in ``source`` (a CSV file or a folder of them).

    Columns: each schema field as a string (None when absent or empty), ``_line`` (the raw line), ``_file``,
    ``_order`` (sorts rows in file order: later lines win when IDs repeat) and ``_format_error``.
    Blank lines and each file's header line are skipped. Header problems fail before any work.
    """
    files = list_files(spark, source, CSV_SUFFIXES)
    by_header: dict[str, list[str]] = defaultdict(list)
    for path in files:
        by_header[read_first_line(spark, path)].append(path)
    problems = [p for line, paths in by_header.items()
                for p in check_header(paths[0] if len(paths) == 1 else f"{len(paths)} files like {paths[0]}",
                                      parse_header(line), schema, allow_extra)]
    if problems:
        raise UserError("cannot import: " + "; ".join(problems))
    frames = [_read_group(spark, paths, header_line, schema) for header_line, paths in by_header.items()]
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _read_group(spark: SparkSession, paths: list[str], header_line: str, schema: DatasetSchema) -> DataFrame:
    header = parse_header(header_line)
    n = len(header)
    lines = (spark.read.text(paths)
             .select(F.col("value").alias(LINE), F.col("_metadata.file_path").alias(FILE),
                     F.struct(F.col("_metadata.file_path"), F.col("_metadata.file_block_start"),
                              F.monotonically_increasing_id()).alias(ORDER),
                     F.col("_metadata.file_block_start").alias("_block"))
             .where((F.trim(F.col(LINE)) != "") & ~((F.col("_block") == 0) & (F.col(LINE) == header_line))))
    # Count columns outside quotes: drop escaped characters, then quoted sections, then count commas.
    unescaped = F.regexp_replace(F.col(LINE), r"\\.", "")
    quotes = F.length(unescaped) - F.length(F.regexp_replace(unescaped, '"', ""))
    columns = F.size(F.split(F.regexp_replace(unescaped, '"[^"]*"', ""), ",", -1))
    format_error = (F.when(quotes % 2 == 1, F.lit("malformed CSV line: unbalanced quotes"))
                    .when(columns != n, F.concat(F.lit("malformed CSV line: "), columns.cast("string"),
                                                 F.lit(f" columns, the header has {n}"))))
    # Parsed once into a struct column, then projected (so from_csv is not repeated per field).
    lines = lines.select(LINE, FILE, ORDER, format_error.alias(FORMAT_ERROR), F.from_csv(
        F.col(LINE), ", ".join(f"c{i} STRING" for i in range(n)), {"mode": "PERMISSIVE"}).alias("_parsed"))
    parsed = F.col("_parsed")
    fields = []
    for f in schema.fields:
        if f.name in header:
            value = parsed.getField(f"c{header.index(f.name)}")
            fields.append(F.when(value != "", value).alias(f.name))
        else:
            fields.append(F.lit(None).cast("string").alias(f.name))
    return lines.select(*fields, LINE, FILE, ORDER, FORMAT_ERROR)
