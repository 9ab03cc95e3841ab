#!/usr/bin/env bash
# spark-submit on any cluster (standalone, YARN): the wheel on --py-files, the packed environment from
# scripts/build_bundle.sh as the Python of the driver and executors, Delta and S3A jars from Maven Central
# (or the platform's own). Set MASTER, RECSYS_BUCKET and the AWS credentials of the standard chain first.
set -euo pipefail
cd "$(dirname "$0")/../.."
spark-submit \
  --master "${MASTER:-yarn}" --deploy-mode client \
  --archives dist/recsys-spark-env.tar.gz#environment \
  --conf spark.pyspark.python=./environment/bin/python \
  --conf spark.pyspark.driver.python="$(pwd)/build/bundle-env/bin/python" \
  --py-files dist/recsys_spark-0.1.0-py3-none-any.whl \
  --packages io.delta:delta-spark_2.13:4.0.1,org.apache.hadoop:hadoop-aws:3.4.1 \
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
  jobs/run_pipeline.py --config configs/cluster/synthetic-ecommerce-s3.yaml
