"""Delta Lake through the package's session: write, read back, append, time travel, schema to table."""

from __future__ import annotations

from delta.tables import DeltaTable

from recsys_spark.doctor import delta_round_trip
from recsys_spark.datasets.warehouse import struct_type
from recsys_spark.schema import DatasetSchema


def test_write_append_and_time_travel(spark, tmp_path):
    location = str(tmp_path / "table")
    assert delta_round_trip(spark, location) == {"latest": 150, "version_0": 100}
    history = DeltaTable.forPath(spark, location).history().orderBy("version").collect()
    assert [(h.version, h.operation) for h in history] == [(0, "WRITE"), (1, "WRITE")]
    v1 = spark.read.format("delta").option("versionAsOf", 1).load(location)
    assert sorted(r.id for r in v1.where("id >= 148").collect()) == [148, 149]
    assert v1.where("doubled != id * 2").count() == 0


def test_schema_becomes_the_delta_table_schema(spark, tmp_path):
    schema = DatasetSchema.model_validate({"fields": [
        {"name": "ITEM_ID", "type": "string"},
        {"name": "GENRES", "type": ["null", "string"], "categorical": True},
        {"name": "YEAR", "type": ["null", "int"]},
        {"name": "PRICE", "type": "double"},
        {"name": "IN_STOCK", "type": "boolean"},
        {"name": "CREATION_TIMESTAMP", "type": "long"},
    ]})
    location = str(tmp_path / "items")
    rows = [("i1", "a|b", 1999, 9.5, True, 1_700_000_000), ("i2", None, None, 1.0, False, 1_700_000_001)]
    spark.createDataFrame(rows, struct_type(schema)).write.format("delta").save(location)
    back = spark.read.format("delta").load(location)
    assert back.schema.simpleString() == \
        "struct<ITEM_ID:string,GENRES:string,YEAR:int,PRICE:double,IN_STOCK:boolean,CREATION_TIMESTAMP:bigint>"
    assert {f.name: f.nullable for f in back.schema}["GENRES"]
    assert sorted(back.collect()) == sorted(rows)


def test_session_is_utc_with_delta_enabled(spark):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert "DeltaSparkSessionExtension" in spark.conf.get("spark.sql.extensions")
    assert spark.sql("SELECT CAST(to_timestamp('1970-01-01 00:00:10') AS LONG) AS s").first().s == 10
