"""spark-submit entry point: list trained solution versions with their metrics.

    spark-submit jobs/solution_versions.py --config pipeline.yaml [--solution top-picks]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("versions")
