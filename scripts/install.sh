#!/usr/bin/env bash
# Idempotent install: checks Java and Python, creates .venv, installs the package with its dev extras,
# fetches the Delta and S3A jars into the local Maven repository (~/.m2) once, and writes the driver's
# class-data archive once. A second run does nothing that is already done, and needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

fail() { echo "install: $*" >&2; exit 1; }

# 1. Java 17+ (Spark 4 runs on Java 17 or 21).
command -v "$JAVA" >/dev/null 2>&1 \
  || fail "Java 17 or newer is required and was not found. Install it (Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17) or set JAVA_HOME."
java_major=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)\.\{0,1\}\([0-9]*\).*/\1 \2/p' | head -n1 | awk '{print ($1 == 1) ? $2 : $1}')
[ "${java_major:-0}" -ge 17 ] \
  || fail "Java 17 or newer is required; $JAVA is version ${java_major:-unknown}. Install openjdk-17 and set JAVA_HOME."

# 2. Python 3.10+.
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
  || fail "Python 3.10 or newer is required (tried '$PYTHON'; set PYTHON=/path/to/python3.x)."

# 3. Virtual environment and the package (reinstalled only when pyproject.toml changes).
if [ ! -x .venv/bin/python ]; then
  echo "install: creating .venv"
  "$PYTHON" -m venv .venv || fail "could not create .venv (Debian/Ubuntu: sudo apt-get install python3-venv)"
fi
stamp=$( (cat pyproject.toml; .venv/bin/python --version) | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.install-stamp 2>/dev/null)" != "$stamp" ]; then
  echo "install: installing recsys_spark with its dev extras into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  echo "$stamp" > .venv/.install-stamp
fi

# 4. Delta and S3A jars (a no-op when all are in the local Maven repository).
.venv/bin/python -m recsys_spark.jars

# 5. The driver's class-data archive (a no-op when this runtime and classpath have one): ~2.5 s less per
#    Spark start (scripts/bench_startup.py). Best effort: without it, sessions start as before.
.venv/bin/python -m recsys_spark.classcache
