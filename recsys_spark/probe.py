"""What one Python process can import: the interpreter and the version of each module the jobs need.

``doctor`` runs :func:`report_partition` as a Python task on every executor and compares the answers with
:func:`environment` on the driver. This module imports nothing from the package at its top, so it can be
shipped by value to executors where the package itself may be missing (that is one of the things it finds).

>>> env = environment()
>>> env["recsys_spark"] == __import__("recsys_spark").__version__ and "numpy" in env
True
"""

from __future__ import annotations

import importlib
import os
import platform
import socket
import sys

# What the jobs import inside Spark tasks (delta.tables on the driver), and pyspark from the cluster.
MODULES = ("recsys_spark", "numpy", "scipy", "pyarrow", "pandas", "delta.tables", "pyspark")
# Keys that describe the process rather than a version to compare.
PROCESS_KEYS = ("interpreter", "host")


def environment() -> dict[str, str]:
    """``{"python": "3.11.2", "interpreter": path, "host": name, module: version or "MISSING: ..."}``."""
    found = {"python": platform.python_version(), "interpreter": sys.executable,
             "host": f"{socket.gethostname()}:{os.path.basename(os.getcwd())}"}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - any failure to import is what this reports
            found[name] = f"MISSING: {type(e).__name__}: {e}"
            continue
        found[name] = _version(name, module)
    return found


def _version(name: str, module) -> str:
    if name == "delta.tables":
        # delta-spark's Python files carry no version attribute; an installed distribution has one, files
        # shipped another way (a platform's jar on --py-files) are named by where they were loaded from.
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("delta-spark")
        except PackageNotFoundError:
            return f"from {os.path.dirname(module.__file__)}"
    return str(getattr(module, "__version__", "unknown"))


def report_partition(_rows):
    """A Spark task's body: one ``(host:working folder, environment())`` pair for the executor it ran on
    (the working folder tells executors on one host apart: Spark runs each in its own)."""
    found = environment()
    yield found["host"], found


def mismatches(driver: dict[str, str], executors: dict[str, dict[str, str]]) -> list[str]:
    """Every module an executor is missing or sees at another version than the driver (Python compared by
    major.minor, as PySpark requires; patch releases may differ)."""

    def comparable(key: str, value: str) -> str:
        return ".".join(value.split(".")[:2]) if key == "python" else value

    problems = [f"driver: {key} {value}" for key, value in driver.items() if value.startswith("MISSING")]
    for executor, found in sorted(executors.items()):
        for key, value in found.items():
            if key in PROCESS_KEYS:
                continue
            if value.startswith("MISSING"):
                problems.append(f"executor {executor}: {key} {value}")
            elif comparable(key, value) != comparable(key, driver.get(key, "")):
                problems.append(f"executor {executor}: {key} {value}, the driver has {driver.get(key)}")
    return problems
