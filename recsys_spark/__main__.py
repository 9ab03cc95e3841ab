from recsys_spark.cli import entry

entry()
