"""One logger tree for the package (``recsys_spark.*``) with structured context on every line.

Log lines carry the run's current step (``step=train:top-picks``), set by :func:`step_context`, so lines
from a scheduled run can be grepped per step; the terminal gets the command's human summary on stdout.
Spark's own log4j output stays at WARN (see ``log4j2.properties``).

>>> with step_context("train:top-picks"):        # doctest: +SKIP
...     log.info("fitted")   # 12:00:01 INFO recsys_spark.solutions.train [step=train:top-picks] fitted
"""

from __future__ import annotations

import contextvars
import logging
import sys
from contextlib import contextmanager

_step: contextvars.ContextVar[str] = contextvars.ContextVar("recsys_spark_step", default="-")
FORMAT = "%(asctime)s %(levelname)s %(name)s [step=%(step)s] %(message)s"


class _StepFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.step = _step.get()
        return True


@contextmanager
def step_context(step: str):
    token = _step.set(step)
    try:
        yield
    finally:
        _step.reset(token)


class _Stderr(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment, not the one of ``configure``: a caller that swaps it (a
    test's capture, then closed) leaves no handler writing to a closed file."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def configure(verbose: bool = False) -> None:
    """Log the package's lines (INFO, or DEBUG with ``verbose``) to stderr with their step."""
    handler = _Stderr()
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
    handler.addFilter(_StepFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("recsys_spark").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("py4j").setLevel(logging.WARNING)
