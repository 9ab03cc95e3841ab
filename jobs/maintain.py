"""spark-submit entry point: Compact and vacuum the tables, prune old versions, rejects and scratch.

    spark-submit jobs/maintain.py --config pipeline.yaml
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("maintain")
