"""Per-run runtime and cost, from Spark's own task metrics.

Every Spark job a run starts carries the run's job group; at the end the metrics of those jobs' stages are
summed from the driver's status store (the data behind Spark's UI and REST API, kept whether or not the UI
is served): executor run time and CPU time of every task, not wall time multiplied by cores. Allocated
core-hours are the run's wall time x the cores the application holds; the cost is core-hours x the
configured price per core-hour, shown beside the managed service's price for the same number of users.

>>> with RunMetrics(spark, "batch-20261129-ab12") as metrics:        # doctest: +SKIP
...     df.write.text(out)
>>> metrics.executor_seconds, metrics.cpu_seconds                     # doctest: +SKIP
(41.2, 38.7)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class RunMetrics:
    """A context manager that tags the Spark jobs started inside it and collects their task metrics."""

    spark: object
    run_id: str
    phases: dict[str, float] = field(default_factory=dict)
    executor_seconds: float = 0.0
    cpu_seconds: float = 0.0
    tasks: int = 0
    peak_execution_memory: int = 0
    wall_seconds: float = 0.0
    cores: int = 0

    def __enter__(self) -> RunMetrics:
        sc = self.spark.sparkContext
        sc.setJobGroup(self.run_id, f"recsys-spark {self.run_id}", interruptOnCancel=True)
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_seconds = time.perf_counter() - self._started
        sc = self.spark.sparkContext
        self.cores = sc.defaultParallelism
        try:
            self._collect()
        except Exception as e:  # noqa: BLE001 - metrics must never fail the run they describe
            log.warning("could not read Spark's task metrics for %s: %s", self.run_id, e)
        finally:
            sc.setLocalProperty("spark.jobGroup.id", None)
            sc.setLocalProperty("spark.job.description", None)

    def phase(self, name: str):
        """``with metrics.phase("score"): ...`` adds that block's wall seconds to ``phases[name]``."""
        return _Phase(self, name)

    def _collect(self) -> None:
        jsc = self.spark.sparkContext._jsc
        store = jsc.sc().statusStore()
        job_ids = list(jsc.statusTracker().getJobIdsForGroup(self.run_id))
        stage_ids = set()
        for job_id in job_ids:
            stage_ids.update(int(s) for s in _seq(store.job(job_id).stageIds()))
        for stage_id in stage_ids:
            for attempt in _seq(store.stageData(stage_id, False, None, False, None)):
                self.executor_seconds += attempt.executorRunTime() / 1000.0
                self.cpu_seconds += attempt.executorCpuTime() / 1e9
                self.tasks += attempt.numCompleteTasks() + attempt.numFailedTasks()
                self.peak_execution_memory = max(self.peak_execution_memory, attempt.peakExecutionMemory())

    def cost(self, price_per_core_hour: float) -> dict:
        core_hours = self.wall_seconds * self.cores / 3600.0
        return {"allocated_core_hours": round(core_hours, 8), "price_per_core_hour_usd": price_per_core_hour,
                "estimated_cost_usd": round(core_hours * price_per_core_hour, 10)}


class _Phase:
    def __init__(self, metrics: RunMetrics, name: str):
        self.metrics, self.name = metrics, name

    def __enter__(self):
        self.started = time.perf_counter()

    def __exit__(self, *exc):
        self.metrics.phases[self.name] = self.metrics.phases.get(self.name, 0.0) + time.perf_counter() - self.started


def _seq(scala_seq) -> list:
    """A Scala Seq (through py4j) as a Python list."""
    return [scala_seq.apply(i) for i in range(scala_seq.size())]
