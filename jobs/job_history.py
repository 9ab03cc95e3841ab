"""spark-submit entry point: print the dataset group's job history, newest first.

    spark-submit jobs/job_history.py --config pipeline.yaml [--limit 50]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("jobs")
