#!/usr/bin/env bash
# spark-submit on any cluster (standalone, YARN, Kubernetes) with the bundle from scripts/build_bundle.sh:
# the packed environment is the Python of the executors (`--archives ...#environment`) and, unpacked on this
# machine, of the driver (client mode), so driver and executors run the same packages. Delta and S3A jars
# come from Maven Central (--packages) or, with NODE_JARS, from paths present on every node. `s3://` URIs
# work as written: where the cluster's Hadoop configuration has no file system for them (anywhere but EMR),
# the package maps them to S3A.
#
#   MASTER=spark://host:7077 RECSYS_BUCKET=my-bucket bash configs/cluster/spark-submit.sh \
#       [spark-submit options...] [-- job.py job-options...]
#
# Without `-- job...`: jobs/run_pipeline.py --config configs/cluster/synthetic-ecommerce-s3.yaml.
# Environment: MASTER (default yarn), DIST (the bundle's folder, default dist), DRIVER_ENV (where the driver's
# copy of the environment is unpacked, default build/driver-env), NODE_JARS (':'-separated jar paths that
# exist on every node, instead of --packages), SPARK_HOME (else spark-submit from PATH); AWS credentials from
# the standard chain (environment, profile, instance role).
set -euo pipefail
cd "$(dirname "$0")/../.."
DIST="${DIST:-dist}"
DRIVER_ENV="${DRIVER_ENV:-build/driver-env}"
archive="$DIST/recsys-spark-env.tar.gz"
[ -f "$archive" ] || { echo "error: $archive not found: run scripts/build_bundle.sh first" >&2; exit 2; }

options=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do options+=("$1"); shift; done
[ $# -gt 0 ] && shift
job=("$@")
[ ${#job[@]} -gt 0 ] || job=(jobs/run_pipeline.py --config configs/cluster/synthetic-ecommerce-s3.yaml)

# Unpacked again whenever the archive is newer than the last unpacking.
if [ ! -f "$DRIVER_ENV/.unpacked" ] || [ "$archive" -nt "$DRIVER_ENV/.unpacked" ]; then
  rm -rf "$DRIVER_ENV"
  mkdir -p "$DRIVER_ENV"
  tar -xzf "$archive" -C "$DRIVER_ENV"
  touch "$DRIVER_ENV/.unpacked"
fi
driver_python="$(cd "$DRIVER_ENV" && pwd)/bin/python"

if [ -n "${NODE_JARS:-}" ]; then
  jars=(--conf "spark.driver.extraClassPath=$NODE_JARS" --conf "spark.executor.extraClassPath=$NODE_JARS")
else
  jars=(--packages io.delta:delta-spark_2.13:4.0.1,org.apache.hadoop:hadoop-aws:3.4.1)
fi

exec "${SPARK_HOME:+$SPARK_HOME/bin/}spark-submit" \
  --master "${MASTER:-yarn}" --deploy-mode client \
  --archives "$archive#environment" \
  --conf spark.pyspark.python=./environment/bin/python \
  --conf "spark.pyspark.driver.python=$driver_python" \
  "${jars[@]}" \
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
  "${options[@]}" "${job[@]}"
