"""Reading CSV sources so that no line is lost and every value lands as written.

Spark reads each file's lines (plain, gzip or bzip2; big files split into segments across tasks; with
``lineSep`` "\\n" a line keeps its "\\r" on CRLF line ends). The dialect is in
:mod:`recsys_spark.core.kernels.csvrecords`; two ways read it:

* A file without a single quote character (most big interaction files) has one record per line that is
  neither blank nor a header line: :meth:`CsvSource.plain` splits its lines at commas in the JVM, with no
  Python in the way. Every line gets a position (``monotonically_increasing_id``, which only grows along a
  segment), so a reject's line number is its position's distance from its segment's first line plus the
  lines of the segments before (:meth:`CsvSource.segment_lines`).
* A file with quotes may have values over several lines: its segments go to
  :class:`~recsys_spark.core.kernels.csvrecords.SegmentReader` inside the tasks (:meth:`CsvSource.segments`).
  Lines without a quote still pass through as they are and are split in the JVM. A record open at the end of
  a segment, and the lines before a segment's first sure record start, come out as fragments (rows of kind
  HEAD, TAIL, LOOSE), which :meth:`CsvSource.stitch` reads in the driver, in file order; each segment also
  reports its number of lines (a SEGMENT row), for line numbers.

Which files have quotes is learnt on the way: the first pass reads every file the plain way and notes the
files where a line holds a quote.

Why not Spark's CSV reader: its permissive mode pads short rows and drops extra columns silently; it cannot
read ``""`` and ``\\"`` in one file; with ``multiLine`` a file is one task; and it gives no line numbers.

>>> source = CsvSource(spark, "s3a://bucket/in/", config.schema("items"))            # doctest: +SKIP
>>> plain = source.plain(exclude=quoted)          # records of the files without quotes      # doctest: +SKIP
>>> rows = source.segments(only=quoted)           # records, fragments, line counts          # doctest: +SKIP
>>> records = source.records(rows)                                                        # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from itertools import pairwise
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.core.kernels.csvrecords import (BOM, NOT_UTF8, RECORD, SEGMENT, SegmentReader, normalized,
                                                  parse_header, stitch)
from recsys_spark.datasets.validation import FORMAT_ERROR
from recsys_spark.errors import UserError
from recsys_spark.schema import DatasetSchema
from recsys_spark.storage import list_files, read_head, stamp

LINE, FILE, ORDER, LINE_NUMBER = "_line", "_file", "_order", "_line_number"
KIND, INDEX, FIELDS, ERROR, BLOCK, GROUP = "_kind", "_index", "_fields", "_error", "_block", "_group"
POS, IS_RECORD, QUOTED = "_pos", "_record", "_quoted"
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
# One row of a segment read in a task: kind (csvrecords' RECORD, HEAD, ...), index (the line in its segment;
# for a SEGMENT row the segment's number of lines), the record's text, fields read in the task (None: split
# `line` at commas), a format error, the file, the segment's start (byte offset), the header group.
ROWS = T.StructType([T.StructField(KIND, T.ByteType()), T.StructField(INDEX, T.LongType()),
                     T.StructField(LINE, T.StringType()), T.StructField(FIELDS, T.ArrayType(T.StringType())),
                     T.StructField(ERROR, T.StringType()), T.StructField(FILE, T.StringType()),
                     T.StructField(BLOCK, T.LongType())])
GROUPED = T.StructType([*ROWS.fields, T.StructField(GROUP, T.IntegerType(), False)])


class Group(NamedTuple):
    """Files with the same header line: the line, its columns, the files."""

    header: str
    columns: list[str]
    files: list[str]


def is_record() -> Column:
    """Whether a row of :meth:`CsvSource.segments` is a record (not a fragment or a segment's line count)."""
    return F.col(KIND) == RECORD


def record_columns(schema: DatasetSchema) -> list[str]:
    """What :meth:`CsvSource.plain` and :meth:`CsvSource.records` give: the schema's fields as strings (None
    when absent or empty), whether the row is a record, whether its line has a quote (plain reading only),
    the record's text, file, segment start and position in the segment (orders records within it), the
    header group, and a format error (a wrong column count, broken quoting, not UTF-8)."""
    return [*schema.names, IS_RECORD, QUOTED, LINE, FILE, BLOCK, POS, GROUP, FORMAT_ERROR]


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
    """The CSV files of ``source`` (a file or a folder; only ``files`` of it when given), grouped by header
    line; header problems fail here, before any work. Files are named as Spark's ``_metadata.file_path``
    names them."""

    def __init__(self, spark: SparkSession, source: str, schema: DatasetSchema, allow_extra: bool = False,
                 files: Sequence[str] | None = None):
        self.spark, self.schema = spark, schema
        by_header: dict[str, list[str]] = defaultdict(list)
        problems, quotes, data = [], False, False
        for path in list_files(spark, source, CSV_SUFFIXES) if files is None else files:
            head = read_head(spark, path)
            line, *rest = head.decode("utf-8", "replace").split("\n")
            if "\r" in line.rstrip("\r"):
                problems.append(f"{path}: lines end with a lone carriage return (old Mac line ends); save the file "
                                "with LF or CRLF line ends")
            by_header[normalized(line)].append(path)
            quotes = quotes or b'"' in head
            data = data or any(normalized(r).strip(" \t") not in ("", normalized(line)) for r in rest)
        # Whether one pass may import the source (see importer): no quote in the files' first 64 kB, and a line
        # there that is neither blank nor a header, so the source has at least one record or one reject.
        self.looks_plain = data and not quotes
        self.groups: list[Group] = []
        for line, paths in by_header.items():
            where = paths[0] if len(paths) == 1 else f"{len(paths)} files like {paths[0]}"
            try:
                columns = parse_header(line)
            except ValueError as e:
                problems.append(f"{where}: header line: {e}")
                continue
            problems += check_header(where, columns, schema, allow_extra)
            self.groups.append(Group(line, columns, paths))
        if problems:
            raise UserError("cannot import: " + "; ".join(problems))
        self.stamps = {path: stamp(spark, path) for g in self.groups for path in g.files}

    def changed(self) -> list[str]:
        """The files whose size or modification time changed since they were listed."""
        return [path for path, was in self.stamps.items() if stamp(self.spark, path) != was]

    def _lines(self, only: Collection[str] | None, exclude: Collection[str]) -> list[DataFrame]:
        """Each group's lines (``value``, with ``_file``, ``_block``, ``_last``: the segment ends its file,
        ``_group``), of the files in ``only`` (all when None) and not in ``exclude``; Spark skips the others."""
        out = []
        for g, group in enumerate(self.groups):
            text = self.spark.read.option("lineSep", "\n").text(group.files)
            file = F.col("_metadata.file_path")
            if only is not None:
                text = text.where(file.isin(list(only)))
            if exclude:
                text = text.where(~file.isin(list(exclude)))
            out.append(text.select(
                "value", file.alias(FILE), F.col("_metadata.file_block_start").alias(BLOCK),
                (F.col("_metadata.file_block_start") + F.col("_metadata.file_block_length")
                 >= F.col("_metadata.file_size")).alias("_last"), F.lit(g).alias(GROUP)))
        return out

    def plain(self, exclude: Collection[str] = (), valid: bool = False) -> DataFrame:
        """Every line of the files not in ``exclude``, read as a file without quotes reads (record columns,
        and ``_error``); ``_quoted`` marks the lines with a quote, which are no records here. ``valid``: skip
        the UTF-8 check, for a second reading whose lines that are not UTF-8 were rejected in the first and are
        left out by position (they are records there too, so every line keeps its position)."""
        frames = []
        for lines in self._lines(None, exclude):
            value = F.col("value")
            text = F.when(value.startswith(BOM), F.expr("substring(value, 2)")).otherwise(value)
            utf8 = F.lit(True) if valid else F.expr("is_valid_utf8(value)")
            frames.append(lines.select("*", F.monotonically_increasing_id().alias(POS), text.alias("_text"),
                                       (F.instr(value, '"') > 0).alias(QUOTED), utf8.alias("_utf8")))
        # The guards (a line ending in \r, one starting with a space or tab) spare most lines a copy.
        rows = _union(frames).withColumn(LINE, F.expr(
            "CASE WHEN NOT _utf8 THEN make_valid_utf8(value) WHEN endswith(_text, '\\r') "
            "THEN TRIM(TRAILING '\\r' FROM _text) ELSE _text END"))
        header = self.header()
        blank = F.expr(f"{LINE} = '' OR ((startswith({LINE}, ' ') OR startswith({LINE}, '\\t')) "
                       f"AND TRIM(BOTH ' \\t' FROM {LINE}) = '')")
        record = ~F.col(QUOTED) & ~blank & (F.col(LINE) != header)
        return self.split(rows.select("*", record.alias(IS_RECORD), F.when(~F.col("_utf8"), NOT_UTF8).alias(ERROR)))

    def header(self) -> Column:
        """The header line of each row's group (a line read by :meth:`plain` equal to it is no record)."""
        return _case(F.col(GROUP), [F.lit(normalized(g.header)) for g in self.groups])

    def split(self, rows: DataFrame) -> DataFrame:
        """Rows of lines read plainly (``_line``, ``_error``, ``_group`` and the rest) with the record columns
        beside theirs: the line split at commas."""
        return self._with_fields(rows, F.split(F.col(LINE), ",", -1), F.col(ERROR))

    def segments(self, only: Collection[str]) -> DataFrame:
        """The rows of the segments of the files in ``only`` read in tasks (:data:`GROUPED`). The same rows
        each time they are computed."""
        frames = [lines.select(F.when(F.expr("is_valid_utf8(value)"), F.col("value")).alias("value"), FILE, BLOCK,
                               "_last").mapInArrow(_segments(self.groups[g].header), ROWS).withColumn(GROUP, F.lit(g))
                  for g, lines in enumerate(self._lines(only, ()))]
        return _union(frames)

    def records(self, rows: DataFrame) -> DataFrame:
        """Rows of :meth:`segments` (or :meth:`stitch`) with the record columns beside theirs."""
        values = F.coalesce(F.col(FIELDS), F.split(F.col(LINE), ",", -1))
        rows = rows.select("*", is_record().alias(IS_RECORD), F.lit(False).alias(QUOTED), F.col(INDEX).alias(POS))
        return self._with_fields(rows, values, F.col(ERROR))

    def _with_fields(self, rows: DataFrame, values: Column, error: Column) -> DataFrame:
        count = F.size(values)
        group = F.col(GROUP)
        expected = _case(group, [F.lit(len(g.columns)) for g in self.groups])
        wrong = F.concat(F.lit("malformed CSV line: "), count.cast("string"), F.lit(" columns, the header has "),
                         expected.cast("string"))
        out = []
        for f in self.schema.fields:
            at = [F.lit(g.columns.index(f.name) + 1) if f.name in g.columns else F.lit(None) for g in self.groups]
            value = F.try_element_at(values, _case(group, at).cast("int"))
            out.append(F.when(value != "", value).alias(f.name))
        return rows.select(*out, *rows.columns, F.coalesce(error, F.when(count != expected, wrong)).alias(FORMAT_ERROR))

    def stitch(self, fragments: Sequence[Row]) -> DataFrame | None:
        """The records held by the fragments (rows of :meth:`segments` of kind HEAD, TAIL, LOOSE and SEGMENT),
        as rows like :meth:`segments`'; None when there are none (every file was read in one segment)."""
        by_file: dict[str, list[Row]] = defaultdict(list)
        for row in fragments:
            if row[KIND] != SEGMENT:
                by_file[row[FILE]].append(row)
        out = []
        for file, rows in by_file.items():
            group = rows[0][GROUP]
            pieces = ((r[BLOCK], r[KIND], r[INDEX], r[LINE]) for r in rows)
            for block, record in stitch(pieces, self.groups[group].header):
                out.append((RECORD, record.index, record.line, record.fields, record.error, file, block, group))
        return self.spark.createDataFrame(out, GROUPED) if out else None

    def segment_lines(self, counts: Sequence[tuple[str, int, int, int]]) -> DataFrame:
        """(``_file``, ``_block``, ``_first``: the line number of the segment's first line minus its first
        position) from (file, segment start, lines, first position) of every segment of some files."""
        by_file: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for file, block, lines, first_position in counts:
            by_file[file].append((block, lines, first_position))
        out = []
        for file, segments in by_file.items():
            number = 1
            for block, lines, first_position in sorted(segments):
                out.append((file, block, number - first_position))
                number += lines
        return self.spark.createDataFrame(out, f"{FILE} string, {BLOCK} bigint, _first long")


def _union(frames: list[DataFrame]) -> DataFrame:
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


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
