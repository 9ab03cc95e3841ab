"""Per-run runtime and cost, from Spark's own task metrics.

Every Spark job a run starts carries the run's job group; at the end the metrics of those jobs' stages are
summed from the driver's status store (the data behind Spark's UI and REST API, kept whether or not the UI
is served): executor run time and CPU time of every task, not wall time multiplied by cores. Allocated
core-hours come from the same store's executor list: each executor's cores x the part of its life (added
to removed, or still running) that falls inside the run. So dynamic allocation (EMR's default), where
executors come and go, bills what was held when, and on a shared cluster only this application's
executors count. In local mode the driver is the one executor, with the ``local[N]`` cores. The cost is
core-hours x the configured price per core-hour, shown beside the managed service's price for the same
number of users.

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
    shuffle_write_bytes: int = 0
    wall_seconds: float = 0.0
    cores: int = 0
    allocated_core_seconds: float | None = None
    executors: int = 0

    def __enter__(self) -> RunMetrics:
        sc = self.spark.sparkContext
        sc.setJobGroup(self.run_id, f"recsys-spark {self.run_id}", interruptOnCancel=True)
        self._started = time.perf_counter()
        self._started_at = time.time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_seconds = time.perf_counter() - self._started
        ended_at = time.time()
        sc = self.spark.sparkContext
        self.cores = sc.defaultParallelism
        try:
            self._collect()
        except Exception as e:  # noqa: BLE001 - metrics must never fail the run they describe
            log.warning("could not read Spark's task metrics for %s: %s", self.run_id, e)
        try:
            spans = executor_spans(sc._jsc.sc().statusStore(), ended_at)
            self.allocated_core_seconds, peak, self.executors = allocation(spans, self._started_at, ended_at)
            self.cores = peak or self.cores
        except Exception as e:  # noqa: BLE001 - as above; cost() falls back to wall time x default parallelism
            log.warning("could not read Spark's executor list for %s: %s", self.run_id, e)
        finally:
            sc.setLocalProperty("spark.jobGroup.id", None)
            sc.setLocalProperty("spark.job.description", None)

    def phase(self, name: str):
        """``with metrics.phase("score"): ...`` adds that block's wall seconds to ``phases[name]``."""
        return _Phase(self, name)

    def _collect(self) -> None:
        jsc = self.spark.sparkContext._jsc
        totals = stage_totals(jsc.sc().statusStore(), list(jsc.statusTracker().getJobIdsForGroup(self.run_id)))
        for name, value in totals.items():
            setattr(self, name, value)

    def cost(self, price_per_core_hour: float) -> dict:
        """Allocated core-hours (from the executors that ran; ``cores_basis`` says which way) and their price."""
        if self.allocated_core_seconds is not None:
            core_hours, basis = self.allocated_core_seconds / 3600.0, "executors"
        else:
            core_hours, basis = self.wall_seconds * self.cores / 3600.0, "wall time x default parallelism"
        return {"allocated_core_hours": round(core_hours, 8), "cores_basis": basis, "executors": self.executors,
                "price_per_core_hour_usd": price_per_core_hour,
                "estimated_cost_usd": round(core_hours * price_per_core_hour, 10)}


class _Phase:
    def __init__(self, metrics: RunMetrics, name: str):
        self.metrics, self.name = metrics, name

    def __enter__(self):
        self.started = time.perf_counter()

    def __exit__(self, *exc):
        self.metrics.phases[self.name] = self.metrics.phases.get(self.name, 0.0) + time.perf_counter() - self.started


def stage_totals(store, job_ids) -> dict:
    """Task metrics of every stage of the jobs ``job_ids``, from the driver's status store, summed
    (``peak_execution_memory``: the largest)."""
    out = {"executor_seconds": 0.0, "cpu_seconds": 0.0, "tasks": 0, "peak_execution_memory": 0,
           "shuffle_write_bytes": 0}
    stage_ids = set()
    for job_id in job_ids:
        stage_ids.update(int(s) for s in _seq(store.job(job_id).stageIds()))
    for stage_id in stage_ids:
        for attempt in _seq(store.stageData(stage_id, False, None, False, None)):
            out["executor_seconds"] += attempt.executorRunTime() / 1000.0
            out["cpu_seconds"] += attempt.executorCpuTime() / 1e9
            out["tasks"] += attempt.numCompleteTasks() + attempt.numFailedTasks()
            out["peak_execution_memory"] = max(out["peak_execution_memory"], attempt.peakExecutionMemory())
            out["shuffle_write_bytes"] += attempt.shuffleWriteBytes()
    return out


def executor_spans(store, now: float) -> list[tuple[float, float, int]]:
    """(added, removed or ``now``, cores) of every executor the status store knows, live or removed, in
    epoch seconds (the driver included: it has the cores only in local mode)."""
    spans = []
    for e in _seq(store.executorList(False)):
        removed = e.removeTime()
        end = removed.get().getTime() / 1000.0 if removed.isDefined() else now
        spans.append((e.addTime().getTime() / 1000.0, end, int(e.totalCores())))
    return spans


def allocation(spans: list[tuple[float, float, int]], start: float, end: float) -> tuple[float, int, int]:
    """Core-seconds the executors held within [start, end], the most cores held at once, and how many
    executors held cores in it.

    >>> allocation([(0, 100, 2), (10, 20, 4), (50, 60, 4), (200, 300, 8)], 5, 55)
    (160.0, 6, 3)
    """
    held = [(max(a, start), min(b, end), cores) for a, b, cores in spans if cores and min(b, end) > max(a, start)]
    events = sorted([(a, cores) for a, _, cores in held] + [(b, -cores) for _, b, cores in held])
    peak = current = 0
    for _, change in events:  # removals sort before additions at the same instant
        current += change
        peak = max(peak, current)
    return float(sum((b - a) * cores for a, b, cores in held)), peak, len(held)


def _seq(scala_seq) -> list:
    """A Scala Seq (through py4j) as a Python list."""
    return [scala_seq.apply(i) for i in range(scala_seq.size())]
