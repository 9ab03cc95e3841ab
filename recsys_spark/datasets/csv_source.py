"""Reading CSV sources so that no line is lost and every value lands as written.

Spark reads each file's lines (plain, gzip or bzip2; big files split into segments across tasks, each
line with its ``\\r`` when the file has CRLF line ends) and every segment is read by
:class:`~recsys_spark.core.kernels.csvrecords.SegmentReader` inside its task: RFC 4180 quoting, the
service's backslash escapes, quoted values over several lines, a byte-order mark, blank and header lines
(the dialect is in that module). Lines without a quote, nearly all of them in most files, pass through as
they are and are split at commas here in the JVM.

Why not Spark's CSV reader: its permissive mode pads short rows and drops extra columns silently; it
cannot read ``""`` and ``\\"`` in one file; with ``multiLine`` a file is one task; and it gives no line
numbers.

A record open at the end of a segment, and the lines before a segment's first sure record start, come out
as fragments (rows of kind HEAD, TAIL, LOOSE); :meth:`CsvSource.stitch` reads them in the driver, in file
order, into the records they hold; each segment also reports its number of lines (a SEGMENT row), which gives
every record its line number in the file (:meth:`CsvSource.line_numbers`).

>>> source = CsvSource(spark, "s3a://bucket/in/", config.schema("items"))          # doctest: +SKIP
>>> rows = source.read()  # every segment's rows: records, fragments, line counts  # doctest: +SKIP
>>> stitched = source.stitch(rows.where(F.col(KIND) != RECORD).collect())          # doctest: +SKIP
>>> records = source.fields(rows.unionByName(stitched))                            # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.core.kernels.csvrecords import RECORD, SEGMENT, SegmentReader, normalized, parse_header, stitch
from recsys_spark.datasets.validation import FORMAT_ERROR
from recsys_spark.errors import UserError
from recsys_spark.schema import DatasetSchema
from recsys_spark.storage import list_files, read_head

LINE, FILE, ORDER, LINE_NUMBER = "_line", "_file", "_order", "_line_number"
KIND, INDEX, FIELDS, ERROR, BLOCK, GROUP = "_kind", "_index", "_fields", "_error", "_block", "_group"
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
# One row of a segment: kind (csvrecords' RECORD, HEAD, ...), index (the line in its segment; for a SEGMENT
# row the segment's number of lines), the record's text, fields read in the task (None: split `line` at commas),
# a format error, the file, the segment's start (byte offset), the header group.
ROWS = T.StructType([T.StructField(KIND, T.ByteType()), T.StructField(INDEX, T.LongType()),
                     T.StructField(LINE, T.StringType()), T.StructField(FIELDS, T.ArrayType(T.StringType())),
                     T.StructField(ERROR, T.StringType()), T.StructField(FILE, T.StringType()),
                     T.StructField(BLOCK, T.LongType())])
GROUPED = T.StructType([*ROWS.fields, T.StructField(GROUP, T.IntegerType(), False)])


def is_record() -> Column:
    """Whether a row of :meth:`CsvSource.read` is a record (not a fragment or a segment's line count)."""
    return F.col(KIND) == RECORD


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


class CsvSource:
    """The CSV files of ``source`` (a file or a folder), grouped by header line; header problems fail here,
    before any work."""

    def __init__(self, spark: SparkSession, source: str, schema: DatasetSchema, allow_extra: bool = False):
        self.spark, self.schema = spark, schema
        by_header: dict[str, list[str]] = defaultdict(list)
        problems = []
        for path in list_files(spark, source, CSV_SUFFIXES):
            line = read_head(spark, path).split(b"\n", 1)[0].decode("utf-8", "replace")
            if "\r" in line.rstrip("\r"):
                problems.append(f"{path}: lines end with a lone carriage return (old Mac line ends); save the file "
                                "with LF or CRLF line ends")
            by_header[normalized(line)].append(path)
        self.groups: list[tuple[str, list[str], list[str]]] = []  # (header line, its columns, files)
        for line, paths in by_header.items():
            where = paths[0] if len(paths) == 1 else f"{len(paths)} files like {paths[0]}"
            try:
                columns = parse_header(line)
            except ValueError as e:
                problems.append(f"{where}: header line: {e}")
                continue
            problems += check_header(where, columns, schema, allow_extra)
            self.groups.append((line, columns, paths))
        if problems:
            raise UserError("cannot import: " + "; ".join(problems))

    def read(self) -> DataFrame:
        """Every segment's rows (:data:`ROWS` and ``_group``, the index of the file's header group). The same
        rows each time it is computed."""
        frames = []
        for g, (header, _, paths) in enumerate(self.groups):
            lines = self.spark.read.option("lineSep", "\n").text(paths).select(
                F.when(F.expr("is_valid_utf8(value)"), F.col("value")).alias("value"),
                F.col("_metadata.file_path").alias(FILE), F.col("_metadata.file_block_start").alias(BLOCK),
                (F.col("_metadata.file_block_start") + F.col("_metadata.file_block_length")
                 >= F.col("_metadata.file_size")).alias("_last"))
            frames.append(lines.mapInArrow(_segments(header), ROWS).withColumn(GROUP, F.lit(g)))
        result = frames[0]
        for frame in frames[1:]:
            result = result.unionByName(frame)
        return result

    def stitch(self, fragments: Sequence[Row]) -> DataFrame | None:
        """The records held by the fragments (rows of :meth:`read` of kind HEAD, TAIL, LOOSE and SEGMENT), as
        rows like :meth:`read`'s; None when there are none (every file was read in one segment)."""
        by_file: dict[str, list[Row]] = defaultdict(list)
        for row in fragments:
            if row[KIND] != SEGMENT:
                by_file[row[FILE]].append(row)
        out = []
        for file, rows in by_file.items():
            group = rows[0][GROUP]
            pieces = ((r[BLOCK], r[KIND], r[INDEX], r[LINE]) for r in rows)
            for block, record in stitch(pieces, self.groups[group][0]):
                out.append((RECORD, record.index, record.line, record.fields, record.error, file, block, group))
        return self.spark.createDataFrame(out, GROUPED) if out else None

    def line_numbers(self, fragments: Sequence[Row]) -> DataFrame:
        """(file, segment start, the number in its file of the segment's first line) from SEGMENT rows."""
        counts: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for row in fragments:
            if row[KIND] == SEGMENT:
                counts[row[FILE]].append((row[BLOCK], row[INDEX]))
        out = []
        for file, segments in counts.items():
            first = 1
            for block, lines in sorted(segments):
                out.append((file, block, first))
                first += lines
        return self.spark.createDataFrame(out, f"{FILE} string, {BLOCK} bigint, _first long")

    def fields(self, rows: DataFrame, with_order: bool = False) -> DataFrame:
        """``rows`` as validation takes them: each schema field as a string (None when absent or empty),
        ``_format_error`` (a wrong column count or broken quoting) and with ``with_order`` ``_order`` (sorts
        records in file order: later lines win when IDs repeat), beside the columns of ``rows``. Only records
        (``_kind`` RECORD) mean anything."""
        values = F.coalesce(F.col(FIELDS), F.split(F.col(LINE), ",", -1))
        count = F.size(values)
        group = F.col(GROUP)
        expected = _case(group, [F.lit(len(columns)) for _, columns, _ in self.groups])
        wrong = F.concat(F.lit("malformed CSV line: "), count.cast("string"), F.lit(" columns, the header has "),
                         expected.cast("string"))
        error = F.coalesce(F.col(ERROR), F.when(count != expected, wrong))
        out = []
        for f in self.schema.fields:
            at = [F.lit(columns.index(f.name) + 1) if f.name in columns else F.lit(None)
                  for _, columns, _ in self.groups]
            value = F.try_element_at(values, _case(group, at).cast("int"))
            out.append(F.when(value != "", value).alias(f.name))
        order = [F.struct(FILE, BLOCK, INDEX).alias(ORDER)] if with_order else []
        return rows.select(*out, *order, *rows.columns, error.alias(FORMAT_ERROR))


def _case(key, values: list):
    """``values[key]`` as a column (the common case, one value, without a CASE)."""
    if len(values) == 1:
        return values[0]
    out = values[-1]
    for i in range(len(values) - 2, -1, -1):
        out = F.when(key == i, values[i]).otherwise(out)
    return out


def _segments(header: str):
    """The mapInArrow function: each partition's lines (one or more segments, each in order) -> ROWS."""

    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        reader, key = None, None
        for batch in batches:
            blocks = batch.column(BLOCK).to_numpy()
            files = batch.column(FILE)
            n = len(batch)
            changed = (blocks[1:] != blocks[:-1]) | ~pc.equal(files.slice(1), files.slice(0, n - 1)).to_numpy(
                zero_copy_only=False)
            bounds = [0, *(np.flatnonzero(changed) + 1), n]
            for a, b in pairwise(bounds):
                here = (files[a].as_py(), int(blocks[a]))
                if here != key:
                    if reader is not None:
                        yield from _with_segment(reader.close(), *key)
                    reader = SegmentReader(header, first=here[1] == 0, last=batch.column("_last")[a].as_py())
                    key = here
                yield from _with_segment(reader.feed(batch.column("value").slice(a, b - a)), *key)
        if reader is not None:
            yield from _with_segment(reader.close(), *key)

    return parse


def _with_segment(batches: Iterator[pa.RecordBatch], file: str, block: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        n = len(batch)
        yield pa.record_batch([*batch.columns, pa.repeat(pa.scalar(file, pa.string()), n),
                               pa.repeat(pa.scalar(block, pa.int64()), n)], names=ROWS.names)
