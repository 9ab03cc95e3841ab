"""The managed service's data deletion job: remove every row of the listed users from every dataset.

The input is a CSV (a file or a folder) with a ``USER_ID`` column. Each dataset table holding USER_ID
(interactions, users) gets one Delta DELETE (a merge of the ID list), so later trainings no longer see
those users. Older table versions still hold the rows until ``VACUUM`` removes their files after the
retention period (7 days by default); run it to erase them physically.

>>> delete_users(spark, config, "s3://bucket/deletions/2026-11.csv")     # doctest: +SKIP
{'users_listed': 2, 'interactions_deleted': 57, 'users_deleted': 2}
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.datasets.conflicts import retry_on_conflict
from recsys_spark.datasets.csv_source import CSV_SUFFIXES
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.errors import UserError
from recsys_spark.jobruns import job_run
from recsys_spark.killpoints import kill_point
from recsys_spark.storage import list_files

DATASETS_WITH_USERS = ("interactions", "users")


def delete_users(spark: SparkSession, config: Config, source: str) -> dict[str, int]:
    """Delete the users listed in ``source``; return how many were listed and rows deleted per dataset."""
    from delta.tables import DeltaTable

    warehouse = Warehouse(spark, config)
    with job_run(warehouse, "delete-users", None, {"source": source}) as run:
        files = list_files(spark, source, CSV_SUFFIXES)
        listed = spark.read.csv(files, header=True)
        if "USER_ID" not in listed.columns:
            raise UserError(f"{source}: the deletion list needs a USER_ID column; its header has "
                            f"{', '.join(listed.columns) or 'no columns'}")
        ids = listed.select(F.trim("USER_ID").alias("USER_ID")).where("USER_ID IS NOT NULL AND USER_ID != ''") \
            .distinct().cache()
        run.counts["users_listed"] = ids.count()
        for dataset in DATASETS_WITH_USERS:
            path = warehouse.path(dataset)
            if config.schema(dataset) is None or not warehouse.exists(path):
                continue
            metrics = retry_on_conflict(
                warehouse, dataset, lambda path=path: DeltaTable.forPath(spark, path).alias("t")
                .merge(ids.alias("s"), "t.USER_ID = s.USER_ID").whenMatchedDelete().execute().first(),
                what=f"delete-users in {dataset}")
            run.counts[f"{dataset}_deleted"] = metrics.num_deleted_rows
            kill_point("delete-users.dataset-done")
        ids.unpersist()
        kill_point("delete-users.done")
        return dict(run.counts)
