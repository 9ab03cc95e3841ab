"""doctor's comparison of what the executors' Python sees with the driver's (Spark-free; the cluster tests
run the probe on real executors)."""

from __future__ import annotations

from recsys_spark import probe
from recsys_spark.doctor import python_table

DRIVER = {"python": "3.11.7", "interpreter": "/opt/env/bin/python", "host": "a:1", "recsys_spark": "0.1.0",
          "numpy": "2.2.1", "delta.tables": "4.0.1"}


def test_an_executor_like_the_driver_is_no_problem_even_on_another_python_patch_release():
    same = {**DRIVER, "python": "3.11.2", "interpreter": "/work/0/environment/bin/python", "host": "b:0"}
    assert probe.mismatches(DRIVER, {"b:0": same}) == []


def test_missing_modules_and_other_versions_are_named_per_executor():
    other = {**DRIVER, "python": "3.12.1", "numpy": "1.26.4", "recsys_spark": "MISSING: ModuleNotFoundError: x"}
    assert probe.mismatches(DRIVER, {"b:0": DRIVER, "c:1": other}) == [
        "executor c:1: python 3.12.1, the driver has 3.11.7",
        "executor c:1: recsys_spark MISSING: ModuleNotFoundError: x",
        "executor c:1: numpy 1.26.4, the driver has 2.2.1",
    ]
    assert probe.mismatches({**DRIVER, "delta.tables": "MISSING: ImportError: y"}, {}) == [
        "driver: delta.tables MISSING: ImportError: y"]


def test_the_table_puts_each_executor_beside_the_driver():
    rows = python_table(DRIVER, {"b:0": {**DRIVER, "numpy": "1.26.4", "interpreter": "/w/environment/bin/python"}})
    assert rows[0].split() == ["driver", "executor", "b:0"]
    assert rows[2].split() == ["recsys_spark", "0.1.0", "0.1.0"]
    assert rows[3].split() == ["numpy", "2.2.1", "1.26.4"]
    assert rows[-1] == "  python on executor b:0: /w/environment/bin/python"
