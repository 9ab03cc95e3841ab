#!/usr/bin/env bash
# Build what a cluster needs to run the jobs:
#   dist/recsys_spark-<version>-py3-none-any.whl   the package (for --py-files, or a Databricks library)
#   dist/recsys-spark-env.tar.gz                   for `--archives ...#environment`: a virtual environment with
#       the package, its dependencies (numpy, scipy, pyarrow, pandas...) and delta-spark's Python files
#       (`delta.tables`, without pyspark: the cluster supplies Spark and Delta's jars), packed by venv-pack.
#
#   bash scripts/build_bundle.sh                         # nodes run /usr/bin/python3.X (X: the build's)
#   PYTHON=python3.12 PYTHON_PREFIX=/opt/py bash scripts/build_bundle.sh
#
# Why venv-pack with an absolute prefix: the archive carries the environment's packages, and its bin/python
# is a link to ${PYTHON_PREFIX}/bin/python3.X, a path that exists on every node of the cluster (the
# platform's own interpreter), never to the build machine's interpreter. A virtual environment only links
# to its interpreter, so the one at PYTHON_PREFIX must have the same minor version as the build's, and the
# compiled wheels (numpy, scipy, pyarrow) the same OS family and CPU architecture: build on the platform's
# OS (README, "Running on a cluster"). Packing an interpreter inside the archive instead needs conda
# (conda-pack) or a prebuilt relocatable CPython, neither of which the Python package index provides.
#
# Settings (environment variables):
#   PYTHON          the build interpreter (default python3)
#   PYTHON_PREFIX   absolute prefix of the same Python version on the cluster's nodes (default /usr)
#   DIST            output folder (default dist)
#   COMPRESS_LEVEL  gzip level of the archive, 0-9 (default 4)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
PYTHON_PREFIX="${PYTHON_PREFIX:-/usr}"
DIST="${DIST:-dist}"
BUILD="${BUILD:-build/bundle}"
case "$PYTHON_PREFIX" in
  /*) ;;
  *) echo "error: PYTHON_PREFIX must be an absolute path (the interpreter's prefix on the nodes), got '$PYTHON_PREFIX'" >&2
     exit 2 ;;
esac
minor="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
# The delta-spark release the package is tested with (the `local` extra), for its Python files only.
delta="$(sed -n 's/.*"delta-spark==\([^"]*\)".*/\1/p' pyproject.toml)"
[ -n "$delta" ] || { echo "error: no delta-spark==VERSION in pyproject.toml" >&2; exit 1; }

rm -rf "$BUILD" "$DIST"/recsys_spark-*.whl "$DIST"/recsys-spark-env.tar.gz
mkdir -p "$DIST" "$BUILD"
"$PYTHON" -m venv "$BUILD/env"
"$PYTHON" -m venv "$BUILD/tools"
"$BUILD/tools/bin/pip" install --quiet --disable-pip-version-check venv-pack==0.2.0
"$BUILD/env/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
"$BUILD/env/bin/pip" wheel --quiet --no-deps --wheel-dir "$DIST" .
"$BUILD/env/bin/pip" install --quiet "$DIST"/recsys_spark-*.whl
"$BUILD/env/bin/pip" install --quiet --no-deps "delta-spark==$delta"
# A broken install fails here rather than on the cluster.
# (delta.tables itself imports pyspark, which only the cluster has: its file is checked, not imported.)
"$BUILD/env/bin/python" -c "import numpy, scipy, pyarrow, pandas, recsys_spark, sysconfig, pathlib
assert pathlib.Path(sysconfig.get_paths()['purelib'], 'delta', 'tables.py').is_file(), 'delta.tables missing'"
# venv-pack replaces the text "<home>/python" at the start of the interpreter link with
# "$PYTHON_PREFIX/bin/python3.X"; a link to <home>/python3 (what `python3 -m venv` makes) would come out as
# ".../python3.X3". So every absolute interpreter link names <home>/python exactly; nothing runs the
# build's environment after this.
home="$(sed -n 's/^home *= *//p' "$BUILD/env/pyvenv.cfg")"
for link in "$BUILD"/env/bin/python*; do
  case "$(readlink "$link")" in /*) ln -sfn "$home/python" "$link" ;; esac
done
# Test files of the dependencies (a sixth of the environment) are never imported by the jobs.
"$BUILD/tools/bin/venv-pack" --quiet --prefix "$BUILD/env" --python-prefix "$PYTHON_PREFIX" \
  --exclude '*/site-packages/*/tests/*' --compress-level "${COMPRESS_LEVEL:-4}" \
  --output "$DIST/recsys-spark-env.tar.gz"
# The archive's interpreter must be the nodes' one, whatever the build machine's was.
"$BUILD/tools/bin/python" - "$DIST/recsys-spark-env.tar.gz" "$PYTHON_PREFIX/bin/python$minor" <<'PY'
import posixpath, sys, tarfile
with tarfile.open(sys.argv[1]) as archive:
    links = {m.name: m.linkname for m in archive.getmembers() if m.issym() and m.name.startswith("bin/python")}
for name in links:
    target = name
    while target in links:  # relative links (python -> python3) inside the archive, then the absolute one
        target = posixpath.normpath(posixpath.join(posixpath.dirname(target), links[target]))
    if target != sys.argv[2]:
        sys.exit(f"error: the archive's {name} leads to {target}, not {sys.argv[2]}")
PY
echo "built for Python $minor at $PYTHON_PREFIX/bin/python$minor on the nodes:"
ls -l "$DIST"/recsys_spark-*.whl "$DIST/recsys-spark-env.tar.gz"
