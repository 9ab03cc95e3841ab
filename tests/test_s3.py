"""S3 through S3A's real HTTP client against moto's S3 server on 127.0.0.1 (no mock objects)."""

from __future__ import annotations

import pytest

from recsys_spark.doctor import run_doctor

pytestmark = pytest.mark.s3


def keys(s3_client, bucket: str, prefix: str = "") -> list[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.mark.parametrize("scheme", ["s3a", "s3"])
def test_delta_table_round_trip_on_s3(spark, s3_client, scheme):
    bucket = f"recs-{scheme}"
    s3_client.create_bucket(Bucket=bucket)
    location = f"{scheme}://{bucket}/warehouse/events"
    rows = [("u1", "i1", 1_700_000_000), ("u2", "i2", 1_700_000_100)]
    spark.createDataFrame(rows, "USER_ID string, ITEM_ID string, TIMESTAMP long") \
        .write.format("delta").save(location)
    spark.createDataFrame([("u3", "i3", 1_700_000_200)], "USER_ID string, ITEM_ID string, TIMESTAMP long") \
        .write.format("delta").mode("append").save(location)
    back = spark.read.format("delta").load(location)
    assert sorted(tuple(r) for r in back.collect()) == sorted(rows + [("u3", "i3", 1_700_000_200)])
    assert spark.read.format("delta").option("versionAsOf", 0).load(location).count() == 2
    # The objects are really in the bucket, where boto3 (another client) sees them.
    stored = keys(s3_client, bucket, "warehouse/events/")
    assert "warehouse/events/_delta_log/00000000000000000000.json" in stored
    assert "warehouse/events/_delta_log/00000000000000000001.json" in stored
    assert sum(k.endswith(".parquet") for k in stored) >= 2
    # What `maintain` counts (Hadoop's content summary through S3A) is what the bucket holds.
    from recsys_spark.storage import footprint

    sizes = [o["Size"] for page in s3_client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="warehouse/events/") for o in page.get("Contents", [])
             if not o["Key"].endswith("/")]  # a folder's marker object is no file
    assert footprint(spark, location) == (len(sizes), sum(sizes))


def test_doctor_probes_an_s3_warehouse_root_and_cleans_up(spark, s3_client, write_config):
    s3_client.create_bucket(Bucket="doctor-bucket")
    path = write_config("""
dataset_group:
  name: s3-group
  root: s3://doctor-bucket/prod/recs
  schemas:
    interactions:
      fields:
        - {name: USER_ID, type: string}
        - {name: ITEM_ID, type: string}
        - {name: TIMESTAMP, type: long}
""")
    report = run_doctor(str(path))
    assert "all good" in report and "s3://doctor-bucket/prod/recs/_doctor/" in report
    # Only S3A's empty-folder marker may remain, no data.
    assert [k for k in keys(s3_client, "doctor-bucket", "prod/recs/_doctor/") if not k.endswith("/")] == []


def test_missing_bucket_is_a_clear_error(spark):
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    with pytest.raises((Py4JJavaError, PySparkException)) as e:
        spark.range(1).write.format("delta").save("s3a://no-such-bucket/t")
    assert "no-such-bucket" in str(e.value)
