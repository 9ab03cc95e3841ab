"""spark-submit entry point: train, evaluate and save a new version of each solution (or --solution S).

    spark-submit jobs/train_solution.py --config pipeline.yaml [--solution top-picks]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("train")
