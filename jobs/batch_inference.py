"""spark-submit entry point: batch inference of each batch job (or --job J).

    spark-submit jobs/batch_inference.py --config pipeline.yaml [--job weekly-mail]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("batch")
