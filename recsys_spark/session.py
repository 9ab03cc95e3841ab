"""The SparkSession every job runs in.

Three situations, one function (:func:`get_spark`):

* A session already exists (a Databricks notebook or job, a test fixture, an earlier job in this process):
  it is returned as it is; nothing is set on it.
* The JVM was started by a launcher (``spark-submit`` on EMR, a standalone cluster, YARN): the launcher's
  settings win; only keys it left unset get this package's defaults (Delta's SQL extension and catalog,
  UTC, S3A for ``s3://`` where the cluster has no file system for it), and the config's ``spark.conf``.
* A plain Python process: a local session is built with the Delta and S3A jars fetched by the install
  step, S3A settings, UTC, quiet logs and Python workers on this interpreter; Spark's console progress
  bar only when stderr is a terminal.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from recsys_spark import classcache, jars
from recsys_spark.config import S3Settings
from recsys_spark.errors import UserError

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
# One BLAS thread per Python worker: Spark already runs a task per core .
ONE_BLAS_THREAD = {f"spark.executorEnv.{v}": "1" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                            "MKL_NUM_THREADS")}
# `s3://` served by S3A. (Only the FileSystem API: Hadoop's FileContext adapter for S3A accepts the s3a
# scheme alone; streaming checkpoints fall back to the FileSystem API.)
S3_SCHEME = {"spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"}
LAUNCHED_DEFAULTS = {**DELTA_CONF, "spark.sql.session.timeZone": "UTC", **ONE_BLAS_THREAD}


def local_conf(master: str, s3: S3Settings | None = None) -> dict[str, str]:
    """Settings of a local session created by this package (before the user's own ``spark.conf``)."""
    log4j = Path(__file__).with_name("log4j2.properties")
    java_opts = f"-Dlog4j.configurationFile=file:{log4j} -Duser.timezone=UTC"
    conf = {
        "spark.master": master,
        "spark.jars": ",".join(jars.local_jar_paths()),
        **DELTA_CONF,
        "spark.sql.session.timeZone": "UTC",
        **ONE_BLAS_THREAD,
        # The install step's class-data archive, when there is one: ~3.5 s less per start (classcache).
        "spark.driver.extraJavaOptions": f"{java_opts} {classcache.archive_options()}".rstrip(),
        "spark.executor.extraJavaOptions": java_opts,
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        # `s3://` as users write it on EMR and Databricks; locally S3A serves it.
        **S3_SCHEME,
        **(s3 or S3Settings()).hadoop_conf(),
    }
    if master.startswith("local"):
        # One machine: stay on loopback, and size Delta's log replay for a few cores, not a cluster.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        conf |= {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                 "spark.databricks.delta.snapshotPartitions": "4"}
    return conf


def console_progress_conf() -> dict[str, str]:
    """Spark's console progress bar off when stderr is not a terminal; on a terminal, Spark's own default.

    The bar redraws itself with carriage returns, which fill a log file (``make demo > demo.log 2>&1``).
    The JVM that pyspark starts writes it to this process's file descriptor 2, so that is what is checked
    (``sys.stderr`` may be replaced, e.g. in a notebook).
    """
    return {} if os.isatty(2) else {"spark.ui.showConsoleProgress": "false"}


def local_settings(master: str, conf: Mapping[str, object] | None = None,
                   s3: S3Settings | None = None) -> dict[str, object]:
    """What :func:`get_spark` sets on the builder of a local session: the package's settings, then the
    user's own ``spark.conf``, which wins."""
    return {**local_conf(master, s3), **console_progress_conf(), **(conf or {})}


def require_java(minimum: int = 17) -> int:
    """The major version of the Java that Spark will start; a clear error when it is missing or too old."""
    java = classcache.java_executable()
    fix = f"install a Java {minimum}+ runtime (Debian/Ubuntu: apt-get install openjdk-{minimum}-jre-headless) " \
          "or point JAVA_HOME at one"
    try:
        out = classcache.java_version_text(java)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"Spark needs Java {minimum} or newer and none was found ({e}); {fix}") from e
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(2) if match and match.group(1) == "1" else match.group(1)) if match else 0
    if major < minimum:
        raise UserError(f"Spark needs Java {minimum} or newer; {java} is {major or 'unknown'}; {fix}")
    return major


def launched_by_spark_submit() -> bool:
    """True when spark-submit (or a platform launcher) started this Python process and its JVM."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(app_name: str = "recsys-spark", *, master: str = "local[*]",
              conf: Mapping[str, object] | None = None, s3: S3Settings | None = None):
    """Return the SparkSession to run a job in, creating it only when none exists.

    ``conf`` (the config's ``spark.conf``) and ``s3`` apply only when this call creates the session.

    >>> spark = get_spark("demo", master="local[2]", conf={"spark.sql.shuffle.partitions": 4})  # doctest: +SKIP
    >>> spark.range(3).count()  # doctest: +SKIP
    3
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name)
    if launched_by_spark_submit():
        # No progress-bar setting here: spark-submit pipes this process's stderr to the JVM, terminal or
        # not, and gives a .py application no bar unless its conf asks for one.
        settings = launched_settings(conf, s3)
    else:
        require_java()
        # Python workers must run this interpreter (with numpy, pyarrow), not whatever `python3` is first.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        settings = local_settings(master, conf, s3)
    for key, value in settings.items():
        builder = builder.config(key, _conf_value(value))
    return builder.getOrCreate()


def launched_settings(conf: Mapping[str, object] | None = None,
                      s3: S3Settings | None = None) -> dict[str, object]:
    """What :func:`get_spark` sets when a launcher started the JVM: the package's defaults, the config's S3
    settings and ``spark.conf``, each only where the launcher (``--conf``, spark-defaults.conf, the
    platform) left the key unset.

    ``s3://`` gets S3A unless the cluster's Hadoop configuration already serves it (EMR's EMRFS in
    core-site.xml); Hadoop itself maps only ``s3a://``.
    """
    from pyspark import SparkConf, SparkContext

    # Attach to spark-submit's JVM first: a SparkConf made before that is an empty Python dict that knows
    # none of the launcher's settings, and the package's defaults would override the user's --conf.
    SparkContext._ensure_initialized()
    launcher = SparkConf()
    hadoop = SparkContext._jvm.org.apache.hadoop.conf.Configuration()
    s3_scheme = {} if hadoop.get("fs.s3.impl") else S3_SCHEME
    wanted = {**LAUNCHED_DEFAULTS, **s3_scheme, **(s3.hadoop_conf() if s3 else {}), **(conf or {})}
    return {k: v for k, v in wanted.items() if not launcher.contains(k)}


def _conf_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def versions(spark) -> dict[str, str]:
    """Spark, Hadoop, Delta and Python versions of a running session (for `doctor` and run reports)."""
    jvm = spark.sparkContext._jvm
    try:  # the jar Delta's classes were loaded from names its version
        delta_class = jvm.org.apache.spark.util.Utils.classForName("io.delta.tables.DeltaTable", True, False)
        source = delta_class.getProtectionDomain().getCodeSource()
        delta = Path(source.getLocation().getPath()).name
    except Exception:  # noqa: BLE001 - py4j raises a generic error; a missing Delta is reported, not fatal
        delta = "not found"
    return {
        "spark": spark.version,
        "hadoop": jvm.org.apache.hadoop.util.VersionInfo.getVersion(),
        "delta": delta,
        "python": sys.version.split()[0],
        "master": spark.sparkContext.master,
    }



def session_for(config, app_name: str = "recsys-spark"):
    """:func:`get_spark` with a loaded config's ``spark`` and ``s3`` settings (and, for a root on S3 without
    a multi-writer log store, the warning that one writer at a time is required)."""
    spark = get_spark(app_name, master=config.spark.master, conf=config.spark.conf, s3=config.s3)
    if config.s3.lock_table:
        return spark  # jobs on the root take turns (recsys_spark.writerlock)
    if (warning := single_writer_warning(config.root, spark.sparkContext.getConf().get)) is not None:
        logging.getLogger(__name__).warning(warning)
    return spark


MULTI_WRITER_LOG_STORE = "io.delta.storage.S3DynamoDBLogStore"


def single_writer_warning(root: str, conf_get) -> str | None:
    """The start-up warning for a warehouse root on S3 whose Delta log store allows one writer at a time.

    Delta's default S3 log store cannot make a commit atomic across processes (S3 has no put-if-absent for
    it): two jobs committing to one table at once from two Spark applications can overwrite each other's
    commit. Delta's DynamoDB-backed log store (``spark.delta.logStore.s3a.impl``) makes that safe.

    >>> single_writer_warning("s3://bucket/recs", lambda key, default=None: default)[:40]
    'the warehouse root s3://bucket/recs is o'
    >>> single_writer_warning("/data/recs", lambda key, default=None: default) is None
    True
    """
    scheme = root.split("://", 1)[0] if "://" in root else ""
    if scheme not in ("s3", "s3a", "s3n"):
        return None
    stores = {conf_get(f"spark.delta.logStore.{s}.impl", None) for s in ("s3", "s3a", scheme)}
    if MULTI_WRITER_LOG_STORE in stores:
        return None
    return (f"the warehouse root {root} is on S3 with Delta's default log store, which allows one writer at a "
            f"time: run one job at a time on this root (two at once, from two processes, can lose a commit). "
            f"Set s3.lock_table (a DynamoDB table) to have jobs take turns, or use Delta's DynamoDB log store "
            f"({MULTI_WRITER_LOG_STORE}); see the README's reliability section")
