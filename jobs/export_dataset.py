"""spark-submit entry point: Write a dataset as CSV with a header.

    spark-submit jobs/export_dataset.py --config pipeline.yaml --dataset items --output s3://bucket/exports/items/
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("export")
