"""The Maven jars a local Spark session needs for Delta Lake and S3A, and fetching them once.

The jars live in the local Maven repository (``~/.m2/repository``, or ``$RECSYS_SPARK_M2_REPO``), fetched
by ``mvn dependency:get`` from Maven Central by the install step; a session then points ``spark.jars`` at
them, so no Spark start needs the network. Versions follow the installed packages: Delta from the
``delta-spark`` Python package, hadoop-aws from the Hadoop client bundled inside ``pyspark`` (they must be
identical), and the AWS SDK bundle that this hadoop-aws release was built against.

Run ``python -m recsys_spark.jars`` to fetch whatever is missing (a no-op when all are present).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from recsys_spark.errors import UserError

# hadoop-aws release -> the AWS SDK v2 bundle it was built against (hadoop-project POM, aws-java-sdk-v2.version).
AWS_SDK_FOR_HADOOP = {"3.4.1": "2.24.6", "3.4.2": "2.29.52", "3.5.0": "2.35.4"}

INSTALL_HINT = "run `make install` (or `python -m recsys_spark.jars`) once with network access"


@dataclass(frozen=True)
class MavenJar:
    """One Maven artifact, e.g. ``MavenJar("io.delta", "delta-storage", "4.0.1")``."""

    group: str
    artifact: str
    version: str

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    def path(self, repository: Path) -> Path:
        return repository.joinpath(*self.group.split("."), self.artifact, self.version,
                                   f"{self.artifact}-{self.version}.jar")


def maven_repository() -> Path:
    """The local Maven repository the jars are read from and fetched into."""
    return Path(os.environ.get("RECSYS_SPARK_M2_REPO", Path.home() / ".m2" / "repository"))


def hadoop_version() -> str:
    """The Hadoop version bundled in the installed pyspark, e.g. ``"3.4.1"`` for pyspark 4.0."""
    import pyspark

    jars = sorted((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"))
    if not jars:
        raise UserError("cannot find hadoop-client-api-*.jar inside the pyspark package; reinstall pyspark")
    return jars[0].name[len("hadoop-client-api-"):-len(".jar")]


def required_jars(with_s3: bool = True) -> list[MavenJar]:
    """Delta (always) and S3A (``with_s3``) jars matching the installed pyspark and delta-spark."""
    import pyspark

    try:
        delta = version("delta-spark")
    except PackageNotFoundError as e:
        raise UserError(f"the delta-spark package is not installed; {INSTALL_HINT}") from e
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    # From Delta 4.1 on, artifacts carry the Spark line in their name; 4.0.x are plain delta-spark_2.13.
    delta_artifact = "delta-spark_2.13" if delta.startswith("4.0.") else f"delta-spark_{spark_minor}_2.13"
    jars = [MavenJar("io.delta", delta_artifact, delta), MavenJar("io.delta", "delta-storage", delta)]
    if with_s3:
        hadoop = hadoop_version()
        if hadoop not in AWS_SDK_FOR_HADOOP:
            raise UserError(f"no known AWS SDK bundle for Hadoop {hadoop} (pyspark {pyspark.__version__}); "
                            f"known: {', '.join(AWS_SDK_FOR_HADOOP)}")
        jars += [MavenJar("org.apache.hadoop", "hadoop-aws", hadoop),
                 MavenJar("software.amazon.awssdk", "bundle", AWS_SDK_FOR_HADOOP[hadoop])]
    return jars


def local_jar_paths(with_s3: bool = True) -> list[str]:
    """Absolute paths of the required jars; a clear error naming the missing ones and the fix."""
    repo = maven_repository()
    jars = required_jars(with_s3)
    missing = [j.coordinate for j in jars if not j.path(repo).is_file()]
    if missing:
        raise UserError(f"Spark jars missing from {repo}: {', '.join(missing)}; {INSTALL_HINT}")
    return [str(j.path(repo)) for j in jars]


def fetch_missing() -> list[MavenJar]:
    """Fetch every required jar not yet in the local repository with Maven; return those fetched."""
    repo = maven_repository()
    missing = [j for j in required_jars() if not j.path(repo).is_file()]
    if missing and shutil.which("mvn") is None:
        raise UserError("Maven (`mvn`) is needed once to fetch the Delta and S3A jars: install it "
                        "(Debian/Ubuntu: apt-get install maven) and rerun the install step")
    for jar in missing:
        print(f"fetching {jar.coordinate}", flush=True)
        result = subprocess.run(["mvn", "--batch-mode", "--strict-checksums", "dependency:get",
                                 f"-Dartifact={jar.coordinate}", "-Dtransitive=false", f"-Dmaven.repo.local={repo}"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise UserError(f"Maven could not fetch {jar.coordinate} into {repo}:\n{result.stdout[-3000:]}")
    return missing


if __name__ == "__main__":
    try:
        fetched = fetch_missing()
    except UserError as e:
        sys.exit(f"error: {e}")
    print(f"jars: {len(fetched)} fetched, all present in {maven_repository()}")
