"""Incremental ingestion of JSON-lines files (exactly once), user deletion, and export round trips."""

from __future__ import annotations

import json

import pytest

from datasets_helpers import SCHEMAS, write
from recsys_spark.config import load_config
from recsys_spark.datasets.deletion import delete_users
from recsys_spark.datasets.export import export_dataset
from recsys_spark.datasets.importer import run_imports
from recsys_spark.datasets.ingest import run_ingest
from recsys_spark.schema import camel_case
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.errors import UserError


@pytest.fixture
def shop(tmp_path, write_config):
    return load_config(write_config(SCHEMAS.format(root=tmp_path / "warehouse")
                                    + f"ingest: {{landing: {tmp_path / 'landing'}, max_reject_ratio: 0.5}}\n"))


def jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def event(n: int, **extra) -> dict:
    return {"userId": f"u{n % 3}", "sessionId": f"s{n}", "eventType": "click", "sentAt": 1_700_000_000 + n,
            "itemId": f"i{n}", "eventId": f"e{n}", **extra}


def test_camel_case_property_names():
    assert camel_case("NUMBER_OF_RATINGS") == "numberOfRatings"
    assert camel_case("GENRES") == "genres"


def test_files_dropped_in_two_rounds_are_each_taken_once(spark, shop, tmp_path):
    wh = Warehouse(spark, shop)
    landing = tmp_path / "landing"
    write(landing / "events" / "batch-1.jsonl", jsonl(
        event(1), event(2, eventValue=2.5),
        event(3, eventId="e1"),  # a duplicate eventId: stored once
        {**event(4), "sentAt": "2023-11-14T22:13:24Z", "impression": ["i4", "i9"], "recommendationId": "r1"},
        '{"userId": "u1", "eventType": "click", ',  # malformed JSON
        {**event(5), "sentAt": "yesterday"},
    ))
    first = run_ingest(spark, shop)
    assert first.counts["interactions"] == {"read": 6, "accepted": 4, "rejected": 2, "inserted": 3, "updated": 0}
    stored = {r.ITEM_ID: r for r in wh.read("interactions", bookkeeping=True).collect()}
    assert sorted(stored) == ["i1", "i2", "i4"]
    assert stored["i2"].EVENT_VALUE == 2.5 and stored["i2"]._ORIGIN == "stream" and stored["i2"]._EVENT_ID == "e2"
    assert stored["i4"].TIMESTAMP == 1_700_000_004  # ISO-8601 sentAt read as epoch seconds
    reasons = {r.line: r.reason for r in spark.read.format("delta").load(wh.rejects_path("interactions")).collect()}
    assert reasons['{"userId": "u1", "eventType": "click", '] == "malformed JSON line"
    assert any(r == "TIMESTAMP is not a long integer: 'yesterday'" for r in reasons.values())

    version = wh.version("interactions")
    again = run_ingest(spark, shop)  # no new files: nothing changes
    assert again.summary() == "ingest: no new files" and wh.version("interactions") == version

    write(landing / "events" / "batch-2.jsonl", jsonl(event(6), event(2), {**event(7), "eventId": None}))
    second = run_ingest(spark, shop)
    assert second.counts["interactions"]["read"] == 3 and second.counts["interactions"]["inserted"] == 2
    assert wh.read("interactions").count() == 5
    jobs = spark.read.format("delta").load(wh.jobs_path).where("kind = 'ingest'").count()
    assert jobs == 3


def test_users_and_items_are_upserted_from_properties(spark, shop, tmp_path):
    wh = Warehouse(spark, shop)
    write(tmp_path / "u.csv", "USER_ID,GENDER,AGE\nu1,F,30\nu2,M,40\n")
    run_imports(spark, shop, "users", str(tmp_path / "u.csv"))
    write(tmp_path / "landing" / "users" / "a.jsonl", jsonl(
        {"userId": "u2", "properties": json.dumps({"gender": "F", "age": 41})},
        {"userId": "u3", "properties": json.dumps({"gender": "M"})},
        {"userId": "u3", "properties": json.dumps({"gender": "F", "age": "22"})},
        {"userId": "u4", "properties": "not json"},
    ))
    write(tmp_path / "landing" / "items" / "a.jsonl", jsonl(
        {"itemId": "i1", "properties": json.dumps({"genres": "comedy|drama", "price": 9.99, "inStock": "true"})}))
    result = run_ingest(spark, shop)
    assert result.counts["users"] == {"read": 4, "accepted": 3, "rejected": 1, "inserted": 1, "updated": 1}
    users = {r.USER_ID: (r.GENDER, r.AGE) for r in wh.read("users").collect()}
    assert users == {"u1": ("F", 30), "u2": ("F", 41), "u3": ("F", 22)}
    item = wh.read("items").first()
    assert (item.ITEM_ID, item.GENRES, item.PRICE, item.IN_STOCK) == ("i1", "comedy|drama", 9.99, True)
    reason = spark.read.format("delta").load(wh.rejects_path("users")).first().reason
    assert reason == "properties is not a JSON object (a string holding one)"
    # A FULL import replaces bulk rows only: ingested users stay unless the file has them.
    write(tmp_path / "u2.csv", "USER_ID,GENDER,AGE\nu1,F,31\n")
    run_imports(spark, shop, "users", str(tmp_path / "u2.csv"))
    assert {r.USER_ID: r.AGE for r in wh.read("users").collect()} == {"u1": 31, "u2": 41, "u3": 22}


def test_ingest_over_the_reject_ratio_fails_and_retries_the_same_files(spark, shop, tmp_path):
    wh = Warehouse(spark, shop)
    write(tmp_path / "landing" / "events" / "bad.jsonl", jsonl("{", "[1]", event(1)))
    with pytest.raises(UserError, match=r"2 of 3 records .* above ingest\.max_reject_ratio 50\.0%"):
        run_ingest(spark, shop)
    assert wh.read("interactions").count() == 0
    with pytest.raises(UserError, match="above ingest.max_reject_ratio"):  # not skipped: taken again
        run_ingest(spark, shop)
    rejects = spark.read.format("delta").load(wh.rejects_path("interactions"))
    assert rejects.count() == 2  # the retried batch did not append its rejects twice


def test_delete_users_everywhere(spark, shop, tmp_path):
    wh = Warehouse(spark, shop)
    write(tmp_path / "e.csv", "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu1,i1,1700000000,view\n"
                              "u2,i1,1700000001,view\nu2,i2,1700000002,view\nu3,i3,1700000003,view\n")
    write(tmp_path / "u.csv", "USER_ID,GENDER,AGE\nu1,F,30\nu2,M,40\nu3,F,50\n")
    run_imports(spark, shop, "interactions", str(tmp_path / "e.csv"))
    run_imports(spark, shop, "users", str(tmp_path / "u.csv"))
    before = wh.version("interactions")
    counts = delete_users(spark, shop, write(tmp_path / "del.csv", "USER_ID\nu2\n u3 \nu9\n"))
    assert {k: counts[k] for k in ("users_listed", "interactions_deleted", "users_deleted")} == {
        "users_listed": 3, "interactions_deleted": 3, "users_deleted": 2}
    assert [r.USER_ID for r in wh.read("interactions").collect()] == ["u1"]
    assert [r.USER_ID for r in wh.read("users").collect()] == ["u1"]
    with pytest.raises(Exception, match="(?i)version"):  # an erasure: the older versions are gone
        wh.read("interactions", version=before).count()
    with pytest.raises(UserError, match="needs a USER_ID column; its header has ID"):
        delete_users(spark, shop, write(tmp_path / "bad.csv", "ID\nu1\n"))


def test_export_round_trips_through_import(spark, shop, tmp_path, write_config):
    source = write(tmp_path / "items.csv", 'ITEM_ID,GENRES,PRICE,IN_STOCK,CREATION_TIMESTAMP\n'
                                           'a,"x|y, z",1.5,true,1600000000\nb,,,false,\n'
                                           'c,"say \\"hi\\"",2.25,,1600000001\n')
    run_imports(spark, shop, "items", source)
    out = str(tmp_path / "export" / "items")
    assert export_dataset(spark, shop, "items", out) == 3
    with pytest.raises(UserError, match="already exists"):
        export_dataset(spark, shop, "items", out)
    other = load_config(write_config(SCHEMAS.format(root=tmp_path / "other"), "other.yaml"))
    [result] = run_imports(spark, other, "items", out)
    assert result.rejected == 0
    original = sorted(tuple(r) for r in Warehouse(spark, shop).read("items").collect())
    assert sorted(tuple(r) for r in Warehouse(spark, other).read("items").collect()) == original
    assert ("c", 'say "hi"', 2.25, None, 1600000001) in original
