"""CSV import of files real tools write: every value as written, header lines never data, rejects with line
numbers, big files split across tasks with records over the splits, older rejects tables, the data limits."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import shutil
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import types as T

from recsys_spark.config import ImportJob, load_config
from recsys_spark.core.kernels.csvrecords import HEAD, NOT_UTF8, SEGMENT, TAIL
from recsys_spark.datasets.csv_source import KIND, CsvSource
from recsys_spark.datasets.importer import import_csv
from recsys_spark.datasets.warehouse import REJECTS_SCHEMA, Warehouse
from recsys_spark.errors import UserError

CONFIG = """
dataset_group:
  name: shop
  root: {root}
  schemas:
    interactions:
      fields:
        - {{name: USER_ID, type: string}}
        - {{name: ITEM_ID, type: string}}
        - {{name: TIMESTAMP, type: long}}
        - {{name: EVENT_TYPE, type: string}}
        - {{name: IMPRESSION, type: ["null", string]}}
    items:
      fields:
        - {{name: ITEM_ID, type: string}}
        - {{name: GENRES, type: ["null", string], categorical: true}}
        - {{name: DESCRIPTION, type: ["null", string], textual: true}}
        - {{name: PRICE, type: ["null", double]}}
        - {{name: NOTE, type: ["null", string]}}
"""
COLUMNS = ["ITEM_ID", "GENRES", "DESCRIPTION", "PRICE", "NOTE"]
# Every kind of value that needs quoting, in every column that can hold it.
ROWS = [
    ["{w}-1", "a|b", "plain", 9.5, "x"],
    ["{w},2", "with,comma", 'He said "hi", twice: ""', 1.0, '"'],
    ['{w}"3', 'q"uote', "two\nlines\n\nand a blank one", None, "crlf\r\ninside"],
    ["{w}-4", "é|中文", "ends with a line break\n", 2.25, "🙂"],
    ["{w}-5", "USER_ID,ITEM_ID", "line\n\ufeffstarting with a byte-order mark", None, "ITEM_ID,GENRES"],
    ["{w}-6", "back\\slash", "C:\\dir\\", 3.0, '{"a": "x\\"y"}'],
    ["{w}-7", " spaced ", "a,\"b\"\r\nc,d", None, "tab\there"],
]


def rows_of(writer: str) -> list[list]:
    return [[v.format(w=writer) if i == 0 else v for i, v in enumerate(row)] for row in ROWS]


def csv_text(rows: list[list], **options) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out, **options)
    writer.writerow(COLUMNS)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return out.getvalue()


@contextmanager
def session_conf(spark, **conf):
    before = {k: spark.conf.get(k) for k in conf}
    for k, v in conf.items():
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            spark.conf.set(k, v)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    folder = tmp_path_factory.mktemp("csv-import")
    (folder / "pipeline.yaml").write_text(CONFIG.format(root=folder / "warehouse"))
    return load_config(folder / "pipeline.yaml")


def run(spark, config, dataset: str, source, ratio: float = 0.01):
    return import_csv(Warehouse(spark, config), ImportJob(dataset=dataset, source=str(source), max_reject_ratio=ratio))


def stored(spark, config, dataset: str = "items") -> dict:
    return {r[0]: list(r) for r in Warehouse(spark, config).read(dataset).collect()}


def rejects(spark, config, result, dataset: str = "items") -> list[tuple]:
    frame = spark.read.format("delta").load(Warehouse(spark, config).rejects_path(dataset))
    return sorted((r.line_number, r.reason, r.line) for r in frame.where(f"job_id = '{result.job_id}'").collect())


def write_files(spark, folder: Path) -> list[str]:
    """One file per writer (and per compression) in ``folder``; returns the writers' names."""
    folder.mkdir()
    pd.DataFrame(rows_of("pandas"), columns=COLUMNS).to_csv(folder / "pandas.csv", index=False)
    pd.DataFrame(rows_of("pandas-win"), columns=COLUMNS).to_csv(folder / "pandas-win.csv", index=False,
                                                                lineterminator="\r\n", encoding="utf-8-sig")
    pd.DataFrame(rows_of("pandas-gz"), columns=COLUMNS).to_csv(folder / "pandas-gz.csv.gz", index=False)
    (folder / "csv-module.csv").write_text(csv_text(rows_of("csv-module")), newline="")
    (folder / "csv-all.csv").write_text(csv_text(rows_of("csv-all"), quoting=csv.QUOTE_ALL), encoding="utf-8-sig",
                                        newline="")
    (folder / "csv-bz2.csv.bz2").write_bytes(bz2.compress(csv_text(rows_of("csv-bz2")).encode()))
    # PostgreSQL's COPY ... TO ... (FORMAT csv, HEADER): LF line ends, quotes only where needed, NULL as nothing.
    (folder / "postgres.csv").write_text(csv_text(rows_of("postgres"), lineterminator="\n"), newline="")
    # Excel's "CSV UTF-8": a byte-order mark, CRLF line ends, LF for a line break inside a cell.
    excel = [[v.replace("\r\n", "\n") if isinstance(v, str) else v for v in row] for row in rows_of("excel")]
    (folder / "excel.csv").write_text(csv_text(excel), encoding="utf-8-sig", newline="")
    # Spark's CSV writer (the service's backslash convention), keeping spaces it would trim by default.
    frame = spark.createDataFrame(rows_of("spark"), "ITEM_ID string, GENRES string, DESCRIPTION string, PRICE double, "
                                                    "NOTE string")
    out = folder.parent / "spark-out"
    (frame.coalesce(1).write.option("header", True).option("ignoreLeadingWhiteSpace", False)
     .option("ignoreTrailingWhiteSpace", False).csv(str(out)))
    shutil.move(next(out.glob("part-*.csv")), folder / "spark.csv")
    return ["pandas", "pandas-win", "pandas-gz", "csv-module", "csv-all", "csv-bz2", "postgres", "excel", "spark"]


def test_files_of_pandas_csv_module_spark_postgres_and_excel_import_as_written(spark, shop, tmp_path):
    writers = write_files(spark, tmp_path / "in")
    result = run(spark, shop, "items", tmp_path / "in")
    assert (result.read, result.rejected) == (len(writers) * len(ROWS), 0), result.summary()
    items = stored(spark, shop)
    for writer in writers:
        expected = rows_of(writer)
        if writer == "excel":
            expected = [[v.replace("\r\n", "\n") if isinstance(v, str) else v for v in row] for row in expected]
        assert [items.get(row[0]) for row in expected] == expected, writer


def test_a_windows_export_with_a_byte_order_mark_and_crlf(spark, shop, tmp_path):
    # Issue 16: the header line was imported as an item whose ITEM_ID is "ITEM_ID".
    path = tmp_path / "windows.csv"
    path.write_bytes("\ufeffITEM_ID,GENRES,PRICE\r\ni1,a|b,1.5\r\ni2,c,\r\n".encode())
    result = run(spark, shop, "items", path)
    assert (result.read, result.accepted) == (2, 2)
    items = stored(spark, shop)
    assert sorted(items) == ["i1", "i2"]
    assert items["i1"][1] == "a|b" and items["i2"][1] == "c" and items["i2"][3] is None


def test_doubled_quotes_land_without_any_quoting_character(spark, shop, tmp_path):
    # Issue 16: stored with its outer quotes and doubled quotes.
    path = tmp_path / "quotes.csv"
    path.write_text('ITEM_ID,GENRES\ni1,"He said ""hi"""\ni2,"""quoted"", then, commas"\n')
    run(spark, shop, "items", path)
    assert {k: v[1] for k, v in stored(spark, shop).items()} == {"i1": 'He said "hi"', "i2": '"quoted", then, commas'}


def test_a_quoted_line_break_is_part_of_its_value(spark, shop, tmp_path):
    # Issue 16: each such line was rejected as "unbalanced quotes", failing the whole import.
    path = tmp_path / "descriptions.csv"
    path.write_text('ITEM_ID,DESCRIPTION\ni1,"first line\nsecond line"\ni2,"a\n\nb, c"\ni3,plain\n')
    result = run(spark, shop, "items", path)
    assert (result.read, result.rejected) == (3, 0)
    assert {k: v[2] for k, v in stored(spark, shop).items()} == {"i1": "first line\nsecond line",
                                                                 "i2": "a\n\nb, c", "i3": "plain"}


def test_rejects_carry_their_line_number(spark, shop, tmp_path):
    path = tmp_path / "numbered.csv"
    path.write_text('ITEM_ID,DESCRIPTION,PRICE\n'       # line 1
                    'i1,"spans\nthree\nlines",1\n'      # 2-4
                    'i2,"broken"quote,2\n'               # 5
                    '\n'                                 # 6
                    'i3,"two\nlines",cheap\n'           # 7-8
                    '"stray,4\n'                         # 9
                    'i5,ok,5\n'                          # 10
                    'i6,too,many,columns\n')             # 11
    result = run(spark, shop, "items", path, ratio=1.0)
    assert (result.read, result.rejected) == (6, 4)
    assert [(n, why) for n, why, _ in rejects(spark, shop, result)] == [
        (5, 'malformed CSV line: a quote inside a quoted value must be doubled ("") or escaped (\\")'),
        (7, "PRICE is not a finite double: 'cheap'"),
        (9, "malformed CSV line: unbalanced quotes"),
        (11, "malformed CSV line: 4 columns, the header has 3")]
    assert rejects(spark, shop, result)[1][2] == 'i3,"two\nlines",cheap'
    assert "rejected line 5: malformed CSV line" in result.summary()


def big_file(rows: int) -> tuple[str, dict[str, str]]:
    """Items whose descriptions often span lines (a record over most segment boundaries), with a broken line
    every 500 rows; the text and the expected description per item."""
    lines, expected = ["ITEM_ID,DESCRIPTION,PRICE"], {}
    for i in range(rows):
        if i % 500 == 250:
            lines.append(f'"broken{i},x,1')
            continue
        description = f"item {i}, " + "\n".join(f'part {k} "q"' for k in range(i % 7))
        expected[f"i{i}"] = description
        quoted = '"' + description.replace('"', '""') + '"'
        lines.append(f"i{i},{quoted},{i}")
    return "\r\n".join(lines) + "\r\n", expected


@pytest.mark.parametrize("compression, rows, split", [("none", 3000, "24k"), ("bzip2", 6000, "4k")])
def test_big_files_split_across_tasks_even_with_records_over_the_splits(spark, shop, tmp_path, compression, rows,
                                                                        split):
    # bzip2 at level 1 compresses 100 kB blocks, the pieces Hadoop splits it into: 380 kB make 4.
    text, expected = big_file(rows)
    path = tmp_path / ("big.csv" if compression == "none" else "big.csv.bz2")
    path.write_bytes(text.encode() if compression == "none" else bz2.compress(text.encode(), compresslevel=1))
    with session_conf(spark, **{"spark.sql.files.maxPartitionBytes": split, "spark.sql.files.openCostInBytes": "0"}):
        segments = CsvSource(spark, str(path), Warehouse(spark, shop).schema("items")).segments([f"file:{path}"])
        kinds = {r[0]: r[1] for r in segments.groupBy(KIND).count().collect()}
        result = run(spark, shop, "items", path)
    assert kinds[SEGMENT] > 2 and kinds.get(HEAD, 0) + kinds.get(TAIL, 0) > 0  # records over the splits
    assert (result.read, result.rejected) == (rows, rows // 500)
    assert {k: v[2] for k, v in stored(spark, shop).items()} == expected
    numbers = [n for n, _, _ in rejects(spark, shop, result)]
    starts = [n for n, line in enumerate(text.split("\n"), 1) if line.startswith('"broken')]
    assert numbers == starts


def test_a_gzip_file_is_read_whole(spark, shop, tmp_path):
    text, expected = big_file(600)
    path = tmp_path / "big.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    result = run(spark, shop, "items", path)
    assert (result.read, result.rejected) == (600, 1)
    assert {k: v[2] for k, v in stored(spark, shop).items()} == expected


def test_a_rejects_table_from_before_line_numbers_takes_new_rejects(spark, tmp_path):
    (tmp_path / "pipeline.yaml").write_text(CONFIG.format(root=tmp_path / "warehouse"))
    config = load_config(tmp_path / "pipeline.yaml")
    path = Warehouse(spark, config).rejects_path("interactions")
    old = T.StructType([f for f in REJECTS_SCHEMA.fields if f.name != "line_number"])
    spark.createDataFrame([("old-job", "interactions", "file:/old.csv", "u1,i1,x", "old reason", datetime(2026, 1, 1))],
                          old).write.format("delta").save(path)
    source = tmp_path / "events.csv"
    source.write_text("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu1,i1,1700000000,view\nu2,i2,bad,view\n")
    result = run(spark, config, "interactions", source, ratio=1.0)
    table = spark.read.format("delta").load(path)
    assert {(r.job_id, r.line_number) for r in table.collect()} == {("old-job", None), (result.job_id, 3)}


def test_the_services_value_limits(spark, shop, tmp_path):
    long = "x" * 1001
    items = tmp_path / "limits.csv"
    items.write_text(f"ITEM_ID,GENRES,DESCRIPTION,NOTE\n{'i' * 257},a,b,c\ni2,{long},b,c\ni3,a,{long},c\ni4,a,b,{long}\n")
    result = run(spark, shop, "items", items, ratio=1.0)
    assert [(n, why) for n, why, _ in rejects(spark, shop, result)] == [
        (2, "ITEM_ID is longer than 256 characters (257)"), (3, "GENRES is longer than 1000 characters (1001)"),
        (5, "NOTE is longer than 1000 characters (1001)")]  # a textual DESCRIPTION has no such limit
    events = tmp_path / "impressions.csv"
    events.write_text(f"USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,IMPRESSION\nu1,i1,1700000000,view,{long}\n"
                      "u1,i2,1700000000,view,i1|i2\n")
    result = run(spark, shop, "interactions", events, ratio=1.0)
    assert [(n, why) for n, why, _ in rejects(spark, shop, result, "interactions")] == [
        (2, "IMPRESSION is longer than 1000 characters (1001)")]


def test_lines_that_are_not_utf8_are_rejected_with_their_number(spark, shop, tmp_path):
    # Excel's plain "CSV" is Windows-1252; one file with quotes (read in segments) and one without.
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_bytes("ITEM_ID,GENRES\r\na1,caf\u00e9\r\na2,\"x, y\"\r\n".encode("cp1252"))
    (tmp_path / "in" / "b.csv").write_bytes("ITEM_ID,GENRES\nb1,ok\nb2,na\u00efve\n".encode("cp1252"))
    result = run(spark, shop, "items", tmp_path / "in", ratio=1.0)
    reasons = {(Path(r.source_file).name, r.line_number): r.reason for r in spark.read.format("delta").load(
        Warehouse(spark, shop).rejects_path("items")).where(f"job_id = '{result.job_id}'").collect()}
    assert reasons == {("a.csv", 2): NOT_UTF8, ("b.csv", 3): NOT_UTF8}
    assert {k: v[1] for k, v in stored(spark, shop).items()} == {"a2": "x, y", "b1": "ok"}


def test_header_lines_that_cannot_be_read_fail_before_any_work(spark, shop, tmp_path):
    mac = tmp_path / "mac.csv"
    mac.write_bytes(b"ITEM_ID,GENRES\ri1,a\r")
    with pytest.raises(UserError, match="lone carriage return"):
        run(spark, shop, "items", mac)
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('"ITEM_ID","GENRES\ni1,a\n')
    with pytest.raises(UserError, match="header line: malformed CSV line: unbalanced quotes"):
        run(spark, shop, "items", quoted)
