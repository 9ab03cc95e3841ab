"""Logs that read well in a file: no Spark progress-bar frames when stderr is not a terminal, and the batch
job's progress lines carry their step."""

from __future__ import annotations

import logging
import os
import pty
import subprocess
import sys
import time

import pytest

from conftest import REPO
from recsys_spark import logs
from recsys_spark.inference.progress import Progress

BAR = "spark.ui.showConsoleProgress"
# What get_spark would set on the builder of a new local session, printed by a separate process whose
# stderr the test chooses; no Spark starts.
PROBE = ("import sys; from recsys_spark.session import local_settings; "
         f"print(repr(local_settings('local[1]', eval(sys.argv[1])).get({BAR!r})))")


def builder_value(stderr, conf: dict | None = None) -> object:
    result = subprocess.run([sys.executable, "-c", PROBE, repr(conf or {})], stdout=subprocess.PIPE,
                            stderr=stderr, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0
    return eval(result.stdout)


def test_no_console_progress_bar_when_stderr_is_a_file(tmp_path):
    with open(tmp_path / "job.log", "w") as log:
        assert builder_value(log) == "false"
    assert builder_value(subprocess.PIPE) == "false"


def test_console_progress_bar_left_to_spark_on_a_terminal():
    main, terminal = pty.openpty()
    try:
        assert builder_value(terminal) is None  # unset: Spark's own default, the bar as before
    finally:
        os.close(terminal)
        os.close(main)


def test_the_users_spark_conf_wins():
    assert builder_value(subprocess.PIPE, {BAR: True}) is True


def test_the_test_session_has_no_console_progress_bar(spark):
    # The session fixture was built while pytest captured file descriptor 2 (not a terminal).
    if os.isatty(2):
        pytest.skip("stderr is a terminal (pytest -s)")
    assert spark.sparkContext.getConf().get(BAR) == "false"


def test_progress_lines_carry_the_callers_step(spark, capsys):
    loggers = [logging.getLogger(name) for name in ("", "recsys_spark", "py4j")]
    handlers, levels = loggers[0].handlers[:], [logger.level for logger in loggers]
    logs.configure()  # the package's own handler and format, writing to the captured stderr
    sc = spark.sparkContext
    done = sc.accumulator(0)

    def slow(rows):
        for _ in rows:
            time.sleep(0.6)
            done.add(1)

    try:
        sc.setJobGroup("progress-step-test", "Progress test")
        with logs.step_context("batch:weekly-mail"), Progress(spark, "progress-step-test", done, "scoring",
                                                              log_every=0):
            sc.parallelize(range(4), 2).foreachPartition(slow)
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
        loggers[0].handlers[:] = handlers
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    lines = [line for line in capsys.readouterr().err.splitlines() if " recsys_spark.inference.progress " in line]
    assert lines, "Progress logged nothing"
    assert all("[step=batch:weekly-mail] scoring: " in line for line in lines), lines
    assert any(" of 2 partitions done" in line for line in lines), lines


def test_log_lines_go_to_the_stderr_of_the_moment(monkeypatch):
    """A caller that swaps sys.stderr after configure (a test's capture, then closed; a redirect) gets the
    lines where stderr is now, and a closed earlier stream raises no 'Logging error'."""
    import io

    first, now = io.StringIO(), io.StringIO()
    root, ours = logging.getLogger(), logging.getLogger("recsys_spark")
    saved = root.handlers[:], root.level, ours.level
    try:
        monkeypatch.setattr(sys, "stderr", first)
        logs.configure()
        first.close()
        monkeypatch.setattr(sys, "stderr", now)
        logging.getLogger("recsys_spark.pipeline").info("import users: started")
        lines = now.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].endswith("INFO recsys_spark.pipeline [step=-] import users: started")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        ours.setLevel(saved[2])
