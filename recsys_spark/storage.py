"""File-system operations on any URI Spark can reach (local, ``s3://``, ``s3a://``, ``dbfs:``...), through
Hadoop's FileSystem API in the session's JVM, so they use exactly the settings and credentials Spark uses.

>>> delete_path(spark, "s3a://bucket/tmp/run-42")   # doctest: +SKIP
True
"""

from __future__ import annotations


def _hadoop_path(spark, uri: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def path_exists(spark, uri: str) -> bool:
    path, fs = _hadoop_path(spark, uri)
    return bool(fs.exists(path))


def delete_path(spark, uri: str) -> bool:
    """Delete a file or a folder with everything in it; False when there was nothing to delete."""
    path, fs = _hadoop_path(spark, uri)
    return bool(fs.delete(path, True))
