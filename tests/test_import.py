"""CSV import into Delta: validation with rejects, reject ratio, FULL and INCREMENTAL, S3, a killed run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datasets_helpers import SCHEMAS, write
from recsys_spark.config import ImportJob, load_config
from recsys_spark.datasets.importer import import_csv, run_imports
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.errors import UserError

REPO = Path(__file__).resolve().parent.parent
LONG_ID = "u" * 257

BAD_INTERACTIONS = f"""\
ITEM_ID,USER_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE
i1,u1,1700000000,view,
i2,u1,1700000001,purchase,9.5
"i,3",u2,1700000002,view,1
i4,u2,1700000003
i5,u2,1700000004,view,1,extra
"i6,u2,1700000005,view,1
i7,u2,abc,view,1
i8,u2,1.7e9,view,1
i9,u2,1700000000000,view,1
i10,u2,-5,view,1
i11,,1700000006,view,1
i12,u2,1700000007,view,high
i13,u2,1700000008,view,NaN
i14,{LONG_ID},1700000009,view,1
i15,u3,,view,

i16,u3,1700000010,click,2
i17,u3, 1700000011,view,1
i18,u3,+1700000012	,view,1
"""
EXPECTED_REASONS = {
    "i4,u2,1700000003": "malformed CSV line: 3 columns, the header has 5",
    "i5,u2,1700000004,view,1,extra": "malformed CSV line: 6 columns, the header has 5",
    '"i6,u2,1700000005,view,1': "malformed CSV line: unbalanced quotes",
    "i7,u2,abc,view,1": "TIMESTAMP is not a long integer: 'abc'",
    "i8,u2,1.7e9,view,1": "TIMESTAMP is not a long integer: '1.7e9'",
    "i9,u2,1700000000000,view,1": "TIMESTAMP looks like milliseconds; epoch seconds expected: 1700000000000",
    "i10,u2,-5,view,1": "TIMESTAMP is negative: -5",
    "i11,,1700000006,view,1": "USER_ID is missing or empty",
    "i12,u2,1700000007,view,high": "EVENT_VALUE is not a finite float: 'high'",
    "i13,u2,1700000008,view,NaN": "EVENT_VALUE is not a finite float: 'NaN'",
    f"i14,{LONG_ID},1700000009,view,1": "USER_ID is longer than 256 characters (257)",
    "i15,u3,,view,": "TIMESTAMP is missing or empty",
    "i17,u3, 1700000011,view,1": "TIMESTAMP is not a long integer: ' 1700000011'",  # the cast would trim it
    "i18,u3,+1700000012\t,view,1": "TIMESTAMP is not a long integer: '+1700000012\t'",
}


@pytest.fixture
def shop(tmp_path, write_config):
    return load_config(write_config(SCHEMAS.format(root=tmp_path / "warehouse")))


def rows(spark, config, dataset):
    return Warehouse(spark, config).read(dataset)


def test_every_bad_row_lands_in_rejects_with_its_reason(spark, shop, tmp_path):
    source = write(tmp_path / "in" / "interactions.csv", BAD_INTERACTIONS)
    [result] = import_allowing_rejects(spark, shop, "interactions", source)
    data_lines = [l for l in BAD_INTERACTIONS.splitlines()[1:] if l.strip()]
    assert result.read == len(data_lines) == 18
    assert (result.accepted, result.rejected) == (4, 14)
    rejects = spark.read.format("delta").load(Warehouse(spark, shop).rejects_path("interactions")) \
        .where(f"job_id = '{result.job_id}'").collect()
    assert {r.line: r.reason for r in rejects} == EXPECTED_REASONS
    assert {r.source_file for r in rejects} == {f"file:{source}"}
    stored = rows(spark, shop, "interactions")
    assert sorted(r.ITEM_ID for r in stored.collect()) == ["i,3", "i1", "i16", "i2"]
    assert stored.where("ITEM_ID = 'i2'").first().EVENT_VALUE == 9.5
    assert stored.where("ITEM_ID = 'i1'").first().EVENT_VALUE is None
    assert stored.schema.simpleString() == \
        "struct<USER_ID:string,ITEM_ID:string,TIMESTAMP:bigint,EVENT_TYPE:string,EVENT_VALUE:float>"


def import_allowing_rejects(spark, config, dataset, source):
    job = ImportJob(dataset=dataset, source=source, max_reject_ratio=1.0)
    return [import_csv(Warehouse(spark, config), job)]


def test_item_rules_booleans_ints_and_categorical_length(spark, shop, tmp_path):
    long_genre = "g" * 1001
    source = write(tmp_path / "items.csv", f"""\
ITEM_ID,GENRES,PRICE,IN_STOCK,CREATION_TIMESTAMP
a,x|y,1.5,true,1600000000
b,,,false,
c,x,2,yes,1600000000
d,{long_genre},2,true,1600000000
e,x,two,true,1600000000
""")
    [result] = import_allowing_rejects(spark, shop, "items", source)
    reasons = {r.line[:1]: r.reason for r in spark.read.format("delta")
               .load(Warehouse(spark, shop).rejects_path("items")).where(f"job_id = '{result.job_id}'").collect()}
    assert reasons == {"c": "IN_STOCK is not a boolean (true or false): 'yes'",
                       "d": "GENRES is longer than 1000 characters (1001)",
                       "e": "PRICE is not a finite double: 'two'"}
    stored = {r.ITEM_ID: r for r in rows(spark, shop, "items").collect()}
    assert set(stored) == {"a", "b"}
    assert stored["a"].IN_STOCK is True and stored["b"].IN_STOCK is False and stored["b"].GENRES is None


def test_header_problems_fail_before_any_work(spark, shop, tmp_path):
    missing = write(tmp_path / "m.csv", "USER_ID,EVENT_TYPE\nu1,view\n")
    with pytest.raises(UserError, match=r"m\.csv: missing required columns ITEM_ID, TIMESTAMP"):
        run_imports(spark, shop, "interactions", missing)
    extra = write(tmp_path / "x.csv", "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,COLOR\nu1,i1,1700000000,view,red\n")
    with pytest.raises(UserError, match=r"x\.csv: columns not in the schema: COLOR \(set allow_extra_columns"):
        run_imports(spark, shop, "interactions", extra)
    with pytest.raises(UserError, match="does not exist"):
        run_imports(spark, shop, "interactions", str(tmp_path / "nope.csv"))
    header_only = write(tmp_path / "h.csv", "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n")
    with pytest.raises(UserError, match="has no data rows; nothing imported"):
        run_imports(spark, shop, "interactions", header_only)
    assert Warehouse(spark, shop).version("interactions") == 0  # created empty, never written


def test_extra_columns_are_ignored_when_allowed(spark, tmp_path, write_config):
    config = load_config(write_config(SCHEMAS.format(root=tmp_path / "w") + f"""
imports:
  - {{dataset: users, source: {tmp_path}/u.csv, allow_extra_columns: true}}
"""))
    write(tmp_path / "u.csv", "AGE,COLOR,USER_ID\n31,red,u1\n,blue,u2\n")
    [result] = run_imports(spark, config)
    assert (result.read, result.accepted) == (2, 2)
    assert sorted(tuple(r) for r in rows(spark, config, "users").collect()) == [("u1", None, 31), ("u2", None, None)]


def test_over_the_reject_ratio_commits_nothing(spark, shop, tmp_path):
    wh = Warehouse(spark, shop)
    good = write(tmp_path / "good.csv", "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu1,i1,1700000000,view\nu2,i2,1700000001,view\n")
    run_imports(spark, shop, "interactions", good)
    before = wh.version("interactions")
    bad = write(tmp_path / "bad.csv", "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu1,i1,x,view\nu3,i3,1700000002,view\n")
    with pytest.raises(UserError, match=r"1 of 2 rows of .*bad\.csv were rejected \(50\.0%\), above "
                                        r"max_reject_ratio 1\.0%; nothing was imported"):
        run_imports(spark, shop, "interactions", bad)
    assert wh.version("interactions") == before
    assert sorted(r.USER_ID for r in wh.read("interactions").collect()) == ["u1", "u2"]
    # The rejects are kept, and the failed run is in the job history.
    assert spark.read.format("delta").load(wh.rejects_path("interactions")).where("line = 'u1,i1,x,view'").count() == 1
    last = spark.read.format("delta").load(wh.jobs_path).orderBy("started_at", ascending=False).first()
    assert (last.kind, last.name, last.status) == ("import", "interactions", "FAILED")
    assert last.counts["rejected"] == 1 and "max_reject_ratio" in last.error


def test_full_twice_gives_the_second_file(spark, shop, tmp_path):
    first = write(tmp_path / "a.csv", "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu1,i1,1700000000,view\nu2,i2,1700000001,view\n")
    second = write(tmp_path / "b.csv", "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu3,i3,1700000002,view\n")
    run_imports(spark, shop, "interactions", first)
    [result] = run_imports(spark, shop, "interactions", second)
    assert [r.USER_ID for r in rows(spark, shop, "interactions").collect()] == ["u3"]
    assert result.version == 2
    jobs = spark.read.format("delta").load(Warehouse(spark, shop).jobs_path).where("status = 'SUCCEEDED'")
    assert jobs.count() == 2 and jobs.where(f"job_id = '{result.job_id}'").first().counts["inserted"] == 1


def test_incremental_twice_adds_nothing_and_updates_changed_records(spark, shop, tmp_path):
    events = write(tmp_path / "e.csv", "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n"
                                       "u1,i1,1700000000,view\nu1,i1,1700000000,view\nu1,i1,1700000000,cart\n")
    [first] = run_imports(spark, shop, "interactions", events, "INCREMENTAL")
    [again] = run_imports(spark, shop, "interactions", events, "INCREMENTAL")
    assert rows(spark, shop, "interactions").count() == 2
    assert (first.inserted, again.inserted, again.unchanged) == (2, 0, 3)

    users = write(tmp_path / "u1.csv", "USER_ID,GENDER,AGE\nu1,F,30\nu2,M,40\n")
    run_imports(spark, shop, "users", users, "INCREMENTAL")
    changed = write(tmp_path / "u2.csv", "USER_ID,GENDER,AGE\nu2,M,41\nu3,F,22\nu3,F,23\n")
    [result] = run_imports(spark, shop, "users", changed, "INCREMENTAL")
    assert (result.inserted, result.updated) == (1, 1)
    stored = {r.USER_ID: r.AGE for r in rows(spark, shop, "users").collect()}
    assert stored == {"u1": 30, "u2": 41, "u3": 23}  # the later line of the file wins


def test_folder_source_with_different_column_orders(spark, shop, tmp_path):
    write(tmp_path / "in" / "part-1.csv", "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu1,i1,1700000000,view\n")
    write(tmp_path / "in" / "part-2.csv", "TIMESTAMP,EVENT_TYPE,ITEM_ID,USER_ID\n1700000001,view,i2,u2\n")
    write(tmp_path / "in" / "notes.txt", "not a csv")
    [result] = run_imports(spark, shop, "interactions", str(tmp_path / "in"))
    assert result.accepted == 2
    assert sorted((r.USER_ID, r.ITEM_ID) for r in rows(spark, shop, "interactions").collect()) == \
        [("u1", "i1"), ("u2", "i2")]


@pytest.mark.s3
def test_import_from_and_into_s3(spark, s3_client, write_config):
    s3_client.create_bucket(Bucket="shop-data")
    s3_client.put_object(Bucket="shop-data", Key="in/interactions.csv",
                         Body=b"USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu1,i1,1700000000,view\nu2,i2,bad,view\n")
    config = load_config(write_config(SCHEMAS.format(root="s3a://shop-data/warehouse") + """
imports:
  - {dataset: interactions, source: s3a://shop-data/in/, max_reject_ratio: 0.5}
"""))
    [result] = run_imports(spark, config)
    assert (result.accepted, result.rejected) == (1, 1)
    assert [r.USER_ID for r in rows(spark, config, "interactions").collect()] == ["u1"]
    rejects = spark.read.format("delta").load("s3a://shop-data/warehouse/_rejects/interactions").collect()
    assert [(r.line, r.source_file) for r in rejects] == [("u2,i2,bad,view", "s3a://shop-data/in/interactions.csv")]


def test_killed_import_leaves_the_previous_version_and_the_next_run_succeeds(spark, shop, tmp_path):
    wh = Warehouse(spark, shop)
    run_imports(spark, shop, "interactions",
                write(tmp_path / "small.csv", "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu1,i1,1700000000,view\n"))
    before = wh.version("interactions")
    big = tmp_path / "big.csv"
    with big.open("w") as f:
        f.write("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n")
        for i in range(400_000):
            f.write(f"u{i % 5000},i{i % 1999},{1_700_000_000 + i},view\n")
    config_path = shop.source
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "recsys_spark", "import", "--config", str(config_path),
                             "--dataset", "interactions", "--source", str(big)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    # Kill it while it writes data files, before its commit.
    table = Path(wh.path("interactions"))
    existing = set(table.glob("*.parquet"))
    deadline = time.monotonic() + 240
    while not (set(table.glob("*.parquet")) - existing) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert wh.version("interactions") == before
    assert [r.USER_ID for r in wh.read("interactions").collect()] == ["u1"]
    [result] = run_imports(spark, shop, "interactions", str(big))
    assert result.accepted == 400_000 and wh.version("interactions") == before + 1
    assert wh.read("interactions").count() == 400_000


def test_jobs_command_lists_the_history_newest_first(spark, shop, tmp_path, capsys):
    from recsys_spark.cli import main

    run_imports(spark, shop, "interactions", write(tmp_path / "a.csv", "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n"
                                                                       "u1,i1,1700000000,view\n"))
    with pytest.raises(UserError):
        run_imports(spark, shop, "interactions", str(tmp_path / "missing.csv"))
    assert main(["jobs", "--config", str(shop.source)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("started (UTC)")
    assert "import" in lines[1] and "FAILED" in lines[1] and "error: UserError: source" in lines[2]
    assert "SUCCEEDED" in lines[3] and "accepted 1" in lines[3]


def one_pass_import(spark, config, dataset, source, **settings):
    """An import that tries one pass whatever the source's size; returns its result and how many passes."""
    wh = Warehouse(spark, config)
    result = import_csv(wh, ImportJob(dataset=dataset, source=source, one_pass_min_mb=0, **settings))
    job = spark.read.format("delta").load(wh.jobs_path).where(f"job_id = '{result.job_id}'").first()
    return result, json.loads(job.metrics)["passes"]


def test_a_source_of_valid_records_is_imported_in_one_pass(spark, shop, tmp_path):
    wh = Warehouse(spark, shop)
    # Written by Python's csv module (CRLF line ends), users with an ID twice: the later line wins.
    with open(tmp_path / "users.csv", "w", newline="") as f:
        csv.writer(f).writerows([("USER_ID", "GENDER", "AGE"), ("u1", "F", 30), ("u2", "M", ""), ("u1", "F", 31)])
    result, passes = one_pass_import(spark, shop, "users", str(tmp_path / "users.csv"))
    assert passes == 1 and (result.read, result.accepted, result.inserted, result.unchanged) == (3, 3, 2, 1)
    assert {r.USER_ID: r.AGE for r in rows(spark, shop, "users").collect()} == {"u1": 31, "u2": None}

    # Daily drops, only the new files: the ledger commits with the rows in the one pass too.
    drops = tmp_path / "drops"
    write(drops / "day-1.csv", "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu1,i1,1700000000,view\nu2,i2,1700000001,view\n")
    incremental = {"mode": "INCREMENTAL", "only_new_files": True}
    result, passes = one_pass_import(spark, shop, "interactions", str(drops), **incremental)
    assert passes == 1 and (result.read, result.inserted, result.new_files) == (2, 2, 1)
    write(drops / "day-2.csv", "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu3,i3,1700000002,view\n")
    result, passes = one_pass_import(spark, shop, "interactions", str(drops), **incremental)
    assert passes == 1 and (result.inserted, result.new_files) == (1, 1)
    assert import_csv(wh, ImportJob(dataset="interactions", source=str(drops), one_pass_min_mb=0,
                                    **incremental)).new_files == 0
    assert rows(spark, shop, "interactions").count() == 3


def test_one_pass_gives_way_to_two_at_a_reject_or_a_quote_and_commits_nothing_itself(spark, shop, tmp_path):
    wh = Warehouse(spark, shop)
    header = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\n"
    plain = "".join(f"u{k},i{k % 50},{1_700_000_000 + k},view,1\n" for k in range(3000))  # > 64 kB
    # A quoted value after the first 64 kB: the one pass meets it, the two passes read it.
    source = write(tmp_path / "late-quote.csv", header + plain + 'q1,"i,9",1700009999,view,2\n')
    result, passes = one_pass_import(spark, shop, "interactions", source)
    assert passes == 2 and (result.read, result.accepted) == (3001, 3001)
    assert rows(spark, shop, "interactions").where("USER_ID = 'q1'").first().ITEM_ID == "i,9"
    before = wh.version("interactions")

    # A reject on the last line: one commit (the two passes'), the reject kept with its line number.
    source = write(tmp_path / "late-reject.csv", header + plain + "q2,i9,later,view,2\n")
    result, passes = one_pass_import(spark, shop, "interactions", source)
    assert passes == 2 and (result.accepted, result.rejected) == (3000, 1)
    assert wh.version("interactions") == before + 1
    [reject] = spark.read.format("delta").load(wh.rejects_path("interactions")) \
        .where(f"job_id = '{result.job_id}'").collect()
    assert (reject.line_number, reject.line) == (3002, "q2,i9,later,view,2")

    # After an import with rejects the next goes straight to two passes; after a clean one, one pass again.
    clean = write(tmp_path / "clean.csv", header + plain)
    assert [one_pass_import(spark, shop, "interactions", clean)[1] for _ in range(2)] == [2, 1]

    # Over the ratio: neither the one pass nor the two commit.
    source = write(tmp_path / "bad.csv", header + "u1,i1,x,view,1\nu2,i2,1700000000,view,1\n")
    with pytest.raises(UserError, match="above max_reject_ratio"):
        one_pass_import(spark, shop, "interactions", source)
    assert wh.version("interactions") == before + 3

    # A header alone is never taken for an empty source to commit.
    source = write(tmp_path / "empty.csv", header)
    with pytest.raises(UserError, match="has no data rows"):
        one_pass_import(spark, shop, "interactions", source)
    assert wh.version("interactions") == before + 3 and rows(spark, shop, "interactions").count() == 3000
