"""The solution-version store (:mod:`recsys_spark.core.store`) on Spark's file system, so the jobs read and
write versions wherever Spark can (local, ``s3://``, ``s3a://``, ``dbfs:``...) with Spark's credentials.

>>> version = get_version(spark, config, "top-picks")               # doctest: +SKIP
>>> model = version_store(spark, config).load_model(version)         # doctest: +SKIP
"""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql import DataFrame

from recsys_spark import storage
from recsys_spark.config import Config
from recsys_spark.core.store import USER_FACTORS, SolutionVersion, VersionStore
from recsys_spark.recipes.fitting import to_spark


class SparkFiles:
    """:class:`recsys_spark.core.store.Files` through the session's Hadoop file system and Parquet I/O."""

    def __init__(self, spark):
        self.spark = spark

    def list_folders(self, uri: str) -> list[str]:
        return storage.list_folders(self.spark, uri)

    def exists(self, uri: str) -> bool:
        return storage.path_exists(self.spark, uri)

    def read_text(self, uri: str) -> str:
        return storage.read_text(self.spark, uri)

    def write_text(self, uri: str, text: str) -> None:
        storage.write_text(self.spark, uri, text)

    def read_table(self, uri: str) -> pa.Table:
        return self.spark.read.parquet(uri).toArrow()

    def write_table(self, uri: str, table: pa.Table | DataFrame) -> None:
        """An Arrow table (from the driver) as one file; a DataFrame (a table the executors hold, such as the
        ``blocked`` ALS engine's user factors) as its tasks write it."""
        frame = table if isinstance(table, DataFrame) else to_spark(self.spark, table).coalesce(1)
        frame.write.mode("errorifexists").parquet(uri)


def version_store(spark, config: Config) -> VersionStore:
    """The config's versions, through Spark."""
    return VersionStore(config.root, SparkFiles(spark))


def list_versions(spark, config: Config, solution: str) -> list[SolutionVersion]:
    """The solution's complete versions, oldest first."""
    return version_store(spark, config).list(solution)


def get_version(spark, config: Config, solution: str, version: str | None = None) -> SolutionVersion:
    """The named version of a solution of the config, or its newest one; a clear error when there is none."""
    config.solution(solution)
    return version_store(spark, config).get(solution, version)


def user_factors(spark, version: SolutionVersion) -> DataFrame | None:
    """The trained users' factors (USER_ID, FACTORS) as a DataFrame, or None for recipes without them."""
    return spark.read.parquet(f"{version.path}/{USER_FACTORS}") if version.has_user_factors else None
