"""The managed service's dataset export job: a dataset table as CSV with a header row.

The output folder gets Spark's part files (``part-*.csv``) plus ``_SUCCESS``; the format is the one
`import` reads (``"`` quotes, ``\\`` escapes, empty for null), so an export imports back unchanged.

>>> export_dataset(spark, config, "items", "s3://bucket/exports/items/")     # doctest: +SKIP
2000
"""

from __future__ import annotations

from pyspark.sql import Observation, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.errors import UserError
from recsys_spark.jobruns import job_run
from recsys_spark.storage import path_exists


def export_dataset(spark: SparkSession, config: Config, dataset: str, output: str, overwrite: bool = False) -> int:
    """Write ``dataset`` (its latest version, schema columns only) to ``output``; return the rows written."""
    warehouse = Warehouse(spark, config)
    with job_run(warehouse, "export", dataset, {"dataset": dataset, "output": output}) as run:
        frame = warehouse.read(dataset)
        if path_exists(spark, output) and not overwrite:
            raise UserError(f"export output {output} already exists; choose another or pass --overwrite")
        written = Observation(f"export-{run.job_id}")
        (frame.observe(written, F.count(F.lit(1)).alias("rows")).write
         .mode("overwrite" if overwrite else "errorifexists").option("header", True).csv(output))
        run.counts["rows"] = written.get["rows"]
        run.metrics["version"] = warehouse.version(dataset)
        return run.counts["rows"]
