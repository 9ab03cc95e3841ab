"""spark-submit entry point: offline metrics of a solution version on the snapshot it was trained on.

    spark-submit jobs/evaluate_solution.py --config pipeline.yaml --solution top-picks [--protocol benchmark]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("evaluate")
