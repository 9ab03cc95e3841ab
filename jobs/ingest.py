"""spark-submit entry point: Take new JSON-lines event, user and item files from the landing folders, exactly once.

    spark-submit jobs/ingest.py --config pipeline.yaml
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("ingest")
