#!/usr/bin/env bash
# Build what a cluster needs to run the jobs: the package as a wheel (for --py-files or a Databricks
# library) and a packed virtual environment with its native dependencies (numpy, scipy, pyarrow...) for
# `--archives` / `spark.archives`. pyspark and delta-spark are left out: the cluster supplies Spark and
# Delta. Output: dist/recsys_spark-<version>-py3-none-any.whl and dist/recsys-spark-env.tar.gz.
#
#   bash scripts/build_bundle.sh            # then upload dist/ and jobs/ (see README, "Running on a cluster")
#
# Build on the same OS and CPU architecture (and Python minor version) as the cluster's nodes, e.g. in
# an Amazon Linux container for EMR, since the archive carries compiled libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
rm -rf dist build/bundle-env
mkdir -p dist
"$PYTHON" -m venv build/bundle-env
build/bundle-env/bin/pip install --quiet --upgrade pip
build/bundle-env/bin/pip wheel --quiet --no-deps --wheel-dir dist .
build/bundle-env/bin/pip install --quiet dist/recsys_spark-*.whl venv-pack
build/bundle-env/bin/venv-pack --quiet --python-prefix ./environment -p build/bundle-env -o dist/recsys-spark-env.tar.gz 2>/dev/null \
  || build/bundle-env/bin/venv-pack -p build/bundle-env -o dist/recsys-spark-env.tar.gz
ls -l dist
