"""spark-submit entry point: Bulk import CSV files into the dataset tables (FULL or INCREMENTAL), with validation and rejects.

    spark-submit jobs/import_dataset.py --config pipeline.yaml [--dataset D] [--source URI --mode FULL|INCREMENTAL]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("import")
