"""spark-submit entry point: check Spark, Delta and the warehouse root on this cluster.

    spark-submit [--master ...] jobs/doctor.py [--config pipeline.yaml] [--verbose]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("doctor")
