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


def read_csv(spark: SparkSession, source: str, schema: DatasetSchema, allow_extra: bool = False,
             with_order: bool = False) -> DataFrame:
    """Rows of every data line in ``source`` (a CSV file or a folder of them).

    Columns: each schema field as a string (None when absent or empty), ``_line`` (the raw line), ``_file``,
    ``_format_error``, and with ``with_order`` ``_order`` (sorts rows in file order: later lines win when
    IDs repeat).
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
    frames = [_read_group(spark, paths, header_line, schema, with_order) for header_line, paths in by_header.items()]
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _read_group(spark: SparkSession, paths: list[str], header_line: str, schema: DatasetSchema,
                with_order: bool) -> DataFrame:
    header = parse_header(header_line)
    n = len(header)
    # A line equal to the header is a header (files concatenated with their headers); blank lines are no records.
    lines = (spark.read.text(paths)
             .select(F.col("value").alias(LINE), F.col("_metadata.file_path").alias(FILE),
                     F.col("_metadata.file_block_start").alias("_block"))
             .where((F.col(LINE) != header_line) & (F.trim(F.col(LINE)) != "")))
    # from_csv flags a line whose token count differs from the header's in `_corrupt`; unbalanced quotes can
    # still give the right count, so lines holding a quote also get their quotes counted (outside escapes).
    # The message, with regular expressions, is only built for those lines.
    line = F.col(LINE)
    unescaped = F.regexp_replace(line, r"\\.", "")
    unbalanced = (F.instr(line, '"') > 0) & (
        (F.length(unescaped) - F.length(F.replace(unescaped, F.lit('"'), F.lit("")))) % 2 == 1)
    columns = F.size(F.split(F.regexp_replace(unescaped, '"[^"]*"', ""), ",", -1))
    corrupt = F.col("_parsed._corrupt").isNotNull()
    format_error = (F.when(unbalanced, F.lit("malformed CSV line: unbalanced quotes"))
                    .when(corrupt, F.concat(F.lit("malformed CSV line: "), columns.cast("string"),
                                            F.lit(f" columns, the header has {n}"))))
    # Parsed once into a struct column, then projected. (Callers filtering on a reason computed from these
    # fields put a barrier such as `observe` first: a filter pushed below this projection would repeat
    # from_csv once per field reference.)
    order = [F.struct(F.col(FILE), F.col("_block"), F.monotonically_increasing_id()).alias(ORDER)] if with_order else []
    spec = ", ".join([*(f"c{i} STRING" for i in range(n)), "_corrupt STRING"])
    lines = lines.select(LINE, FILE, *order, F.from_csv(line, spec, {"mode": "PERMISSIVE",
                                                                      "columnNameOfCorruptRecord": "_corrupt"})
                         .alias("_parsed"))
    lines = lines.select("*", format_error.alias(FORMAT_ERROR))
    parsed = F.col("_parsed")
    fields = []
    for f in schema.fields:
        if f.name in header:
            value = parsed.getField(f"c{header.index(f.name)}")
            fields.append(F.when(value != "", value).alias(f.name))
        else:
            fields.append(F.lit(None).cast("string").alias(f.name))
    return lines.select(*fields, LINE, FILE, *([ORDER] if with_order else []), FORMAT_ERROR)
