"""Progress of a long Spark phase: partitions done / total and lines per second.

On a terminal a tqdm bar (updated twice a second); otherwise (logs, scheduled jobs) one log line every
``log_every`` seconds. Both read Spark's status tracker for the jobs of the run's job group.

>>> with Progress(spark, run_id, lines_done, label="scoring"):   # doctest: +SKIP
...     frame.write.text(staging)
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, spark, group: str, lines_done, label: str, log_every: float = 10.0):
        """``lines_done``: an accumulator the tasks add their scored lines to."""
        self.spark, self.group, self.done, self.label, self.log_every = spark, group, lines_done, label, log_every
        self._stop = threading.Event()

    def __enter__(self) -> Progress:
        self._started = time.perf_counter()
        # A new thread starts with an empty context: run it in the caller's, so its log lines carry the
        # caller's step (recsys_spark.logs.step_context) instead of `[step=-]`.
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def tasks(self) -> tuple[int, int]:
        """(completed, total) tasks of the group's largest running or finished stage."""
        tracker = self.spark.sparkContext.statusTracker()
        best = (0, 0)
        for job_id in tracker.getJobIdsForGroup(self.group):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job else []:
                stage = tracker.getStageInfo(stage_id)
                if stage and stage.numTasks > best[1]:
                    best = (stage.numCompletedTasks, stage.numTasks)
        return best

    def _run(self) -> None:
        bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=0, desc=self.label, unit=" partitions", file=sys.stderr, leave=False)
        last_log = time.perf_counter()
        while not self._stop.wait(0.5):
            try:
                done, total = self.tasks()
            except Exception:  # noqa: BLE001 - the display must never break the job
                continue
            elapsed = time.perf_counter() - self._started
            rate = self.done.value / max(elapsed, 1e-9)
            if bar is not None:
                bar.total = total
                bar.n = done
                bar.set_postfix_str(f"{rate:,.0f} lines/s", refresh=True)
            elif time.perf_counter() - last_log >= self.log_every:
                log.info("%s: %d of %d partitions done, ~%s lines/s", self.label, done, total, f"{rate:,.0f}")
                last_log = time.perf_counter()
        if bar is not None:
            bar.close()
