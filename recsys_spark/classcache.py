"""A class-data archive (the JVM's AppCDS) for the driver of local Spark sessions: the Spark, Delta and
Hadoop classes a job loads, parsed and verified once at install time instead of at every start.

Measured here (``scripts/bench_startup.py``): a session start plus a first Delta write, MERGE and read,
14.0 s without it, 11.5 s with it. The install step writes the archive (``python -m recsys_spark.classcache``,
about half a minute: one representative run of the JVM with ``-XX:ArchiveClassesAtExit``); a local session
uses it when it exists. Its file name is a fingerprint of the Java runtime, pyspark and the jars, so an
archive made for another runtime or classpath is never used (the JVM would refuse it anyway, with a
warning); without one, sessions start as before.

>>> archive_options(Path("/nonexistent"))
''
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from recsys_spark import jars

# Quiet: a JVM that cannot use the archive (a damaged file, a changed classpath) just starts without it.
_QUIET = "-Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off"


def java_executable() -> str:
    """The java Spark will start: ``$JAVA_HOME/bin/java``, else the first on the PATH."""
    home = os.environ.get("JAVA_HOME")
    return os.path.join(home, "bin", "java") if home else shutil.which("java") or "java"


@functools.lru_cache(maxsize=4)
def java_version_text(java: str) -> str:
    """What ``java -version`` prints (asked once per process: the session's start checks it, the archive's
    name holds it)."""
    return subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr


@functools.lru_cache(maxsize=1)
def archive_path() -> Path:
    """Where this install's archive is (or would be): next to the Python environment, named by a fingerprint
    of ``java -version``, the pyspark release and the jars a local session loads."""
    import pyspark

    try:
        runtime = java_version_text(java_executable())
    except (OSError, subprocess.TimeoutExpired):
        runtime = "no java"
    digest = hashlib.sha256("\n".join([runtime, pyspark.__version__, pyspark.__file__,
                                       *jars.local_jar_paths()]).encode()).hexdigest()[:16]
    return Path(sys.prefix) / "share" / "recsys-spark" / f"driver-{digest}.jsa"


def archive_options(path: Path | None = None) -> str:
    """The driver's JVM options that use the archive, or '' when there is none."""
    path = path or archive_path()
    return f"-XX:SharedArchiveFile={path} {_QUIET}" if path.is_file() else ""


_WORKLOAD = """
import os, shutil, sys, tempfile
os.environ["PYSPARK_PYTHON"] = sys.executable
from recsys_spark.session import local_settings
from pyspark.sql import SparkSession, functions as F
settings = local_settings("local[2]", {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"})
settings["spark.driver.extraJavaOptions"] += " -XX:ArchiveClassesAtExit=" + sys.argv[1]
builder = SparkSession.builder.appName("recsys-spark class archive")
for key, value in settings.items():
    builder = builder.config(key, str(value))
spark = builder.getOrCreate()
from delta.tables import DeltaTable
work = tempfile.mkdtemp()
with open(work + "/rows.csv", "w") as f:
    f.write("USER_ID,ITEM_ID,TIMESTAMP\\n" + "".join(f"u{i % 7},i{i % 5},{i}\\n" for i in range(200)))
rows = spark.read.csv(work + "/rows.csv", header=True, inferSchema=True)
rows.write.format("delta").save(work + "/t")
table = DeltaTable.forPath(spark, work + "/t")
table.alias("t").merge(rows.limit(3).alias("s"), "t.USER_ID = s.USER_ID").whenMatchedUpdateAll() \\
    .whenNotMatchedInsertAll().execute()
table.delete("TIMESTAMP < 3")
read = spark.read.format("delta").load(work + "/t")
read.groupBy("ITEM_ID").agg(F.countDistinct("USER_ID")).toArrow()
read.mapInArrow(lambda batches: batches, read.schema).count()
spark.stop()
shutil.rmtree(work)
"""


def build(path: Path | None = None) -> Path | None:
    """Write the archive by running a representative local job once (Delta create, MERGE, DELETE, read, an
    aggregation through Arrow, a Python task); None, with the reason printed, when the JVM cannot."""
    path = path or archive_path()
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        partial = Path(scratch) / path.name
        done = subprocess.run([sys.executable, "-c", _WORKLOAD, str(partial)], capture_output=True, text=True)
        if done.returncode != 0 or not partial.is_file():
            print(f"classcache: no class-data archive (sessions start without one): {done.stderr[-500:]}",
                  file=sys.stderr)
            return None
        shutil.move(partial, path)
    for stale in path.parent.glob("driver-*.jsa"):  # archives of an earlier runtime or classpath
        if stale != path:
            stale.unlink(missing_ok=True)
    return path


if __name__ == "__main__":
    built = build()
    print(f"classcache: {built}" if built else "classcache: none", file=sys.stderr)
