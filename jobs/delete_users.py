"""spark-submit entry point: Erase the listed users from every place under the warehouse root.

    spark-submit jobs/delete_users.py --config pipeline.yaml --source users-to-delete.csv
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("delete-users")
