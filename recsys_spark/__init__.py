"""recsys_spark: a self-hosted recommendation service built as ordinary Spark jobs.

The library holds every job as a function; the command line (`recsys-spark`) and the spark-submit entry
points under `jobs/` only parse arguments and call it.
"""

__version__ = "0.1.0"
