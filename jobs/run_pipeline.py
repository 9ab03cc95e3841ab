"""spark-submit entry point: the whole pipeline (imports, ingestion, training, batch) in one application.

    spark-submit jobs/run_pipeline.py --config pipeline.yaml [--steps import,train]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("pipeline", "run")
