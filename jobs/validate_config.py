"""spark-submit entry point: validate a pipeline config (keys, types, schemas, references).

    spark-submit jobs/validate_config.py --config pipeline.yaml
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("validate")
