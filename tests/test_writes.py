"""Import and ingestion write through the same functions: one upsert, one reject log, one reject-ratio check."""

from __future__ import annotations

import json

import pytest

from datasets_helpers import write
from recsys_spark.datasets import writes
from recsys_spark.datasets.importer import run_imports
from recsys_spark.datasets.ingest import run_ingest
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.errors import UserError
from test_ingest_delete_export import shop  # noqa: F401  (the fixture: a landing folder, ingest ratio 50%)


@pytest.fixture
def calls(monkeypatch):
    """Every call of the shared write functions, as (function, dataset, origin or outcome), from both jobs."""
    seen: list[tuple[str, str, str]] = []

    def spy(name, label):
        real = getattr(writes, name)

        def recorded(warehouse, dataset, *args, **kwargs):
            seen.append((name, dataset, label(args, kwargs)))
            return real(warehouse, dataset, *args, **kwargs)

        monkeypatch.setattr(writes, name, recorded)

    spy("upsert", lambda args, kwargs: args[1])  # the origin: bulk or stream
    spy("check_reject_ratio", lambda args, kwargs: kwargs["outcome"])
    return seen


def user_record(user_id: str, age) -> str:
    return json.dumps({"userId": user_id, "properties": json.dumps({"gender": "F", "age": age})}) + "\n"


def test_ingest_and_incremental_import_upsert_the_same_user_newest_wins(spark, shop, tmp_path, calls):
    wh = Warehouse(spark, shop)
    run_imports(spark, shop, "users", write(tmp_path / "u1.csv", "USER_ID,GENDER,AGE\nu1,F,30\nu2,M,40\n"),
                "INCREMENTAL")
    write(tmp_path / "landing" / "users" / "a.jsonl", user_record("u1", 31) + user_record("u1", 32))
    ingested = run_ingest(spark, shop)
    assert ingested.counts["users"]["updated"] == 1
    assert {r.USER_ID: (r.AGE, r._ORIGIN) for r in wh.read("users", bookkeeping=True).collect()} == {
        "u1": (32, "stream"), "u2": (40, "bulk")}  # the later record of the file wins

    [imported] = run_imports(spark, shop, "users", write(tmp_path / "u2.csv", "USER_ID,GENDER,AGE\nu1,F,33\n"),
                             "INCREMENTAL")
    assert (imported.inserted, imported.updated) == (0, 1)
    assert {r.USER_ID: (r.AGE, r._ORIGIN) for r in wh.read("users", bookkeeping=True).collect()} == {
        "u1": (33, "bulk"), "u2": (40, "bulk")}
    assert [c for c in calls if c[0] == "upsert"] == [("upsert", "users", "bulk"), ("upsert", "users", "stream"),
                                                      ("upsert", "users", "bulk")]


def test_import_and_ingest_over_the_reject_ratio_keep_the_table_and_the_rejects(spark, shop, tmp_path, calls):
    wh = Warehouse(spark, shop)
    run_imports(spark, shop, "users", write(tmp_path / "u.csv", "USER_ID,GENDER,AGE\nu1,F,30\n"), "INCREMENTAL")
    version = wh.version("users")

    with pytest.raises(UserError, match=r"1 of 2 rows of .*bad\.csv were rejected \(50\.0%\), above "
                                        r"max_reject_ratio 1\.0%; nothing was imported\. Reasons are in "
                                        r".*_rejects/users \(job_id .+\), e\.g\.: AGE is not a int integer"):
        run_imports(spark, shop, "users", write(tmp_path / "bad.csv", "USER_ID,GENDER,AGE\nu1,F,x\nu5,M,50\n"),
                    "INCREMENTAL")
    write(tmp_path / "landing" / "users" / "bad.jsonl", user_record("u1", "y") + user_record("u6", "z")
          + user_record("u7", 70))
    with pytest.raises(UserError, match=r"2 of 3 records in new files under .*users were rejected \(66\.7%\), "
                                        r"above ingest\.max_reject_ratio 50\.0%; nothing was ingested from them\. "
                                        r"Reasons are in .*_rejects/users \(job_id ingest-\w+:0\)\.$"):
        run_ingest(spark, shop)

    assert wh.version("users") == version
    assert {r.USER_ID: r.AGE for r in wh.read("users").collect()} == {"u1": 30}
    rejected = {r.line: r.reason for r in spark.read.format("delta").load(wh.rejects_path("users")).collect()}
    assert rejected["u1,F,x"] == "AGE is not a int integer: 'x'"
    assert sorted(why for line, why in rejected.items() if line.startswith("{")) == [
        "AGE is not a int integer: 'y'", "AGE is not a int integer: 'z'"]
    assert [c for c in calls if c[0] == "check_reject_ratio"] == [
        ("check_reject_ratio", "users", "nothing was imported"),
        ("check_reject_ratio", "users", "nothing was imported"),
        ("check_reject_ratio", "users", "nothing was ingested from them")]
