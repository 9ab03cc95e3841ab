"""The whole pipeline in one Spark application: imports, ingestion, training, batch inference, maintenance.

Steps run in that order (``steps`` picks a subset); each step's work is committed as it finishes, so a
failing step stops the run with its error and everything before it stays valid and recorded in ``_jobs``.
The imports of one run, and its batch jobs, mostly wait on Spark's small jobs and Delta commits, so those
of different tables run at once (each in its own session: a job's commit metadata is a session setting);
the imports of one table run one after another in the config's order (a FULL import then an INCREMENTAL
one must not swap). A failing task lets the others of its step finish, then stops the run. Trainings run
one at a time: the local engines and EASE hold their data on the driver. On a root whose jobs take turns
(``s3.lock_table``) everything runs one at a time. The result is a table of the steps: time, row counts or
metrics, and the batch jobs' cost beside the managed service's list price.

>>> result = run_pipeline(spark, config, steps=("import", "train"))   # doctest: +SKIP
>>> print(result.table())                                               # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from recsys_spark.config import Config
from recsys_spark.logs import step_context

log = logging.getLogger(__name__)
STEPS = ("import", "ingest", "train", "batch", "maintain")
AT_ONCE = {"import": 3, "batch": 3}  # tasks of a step run together, at most this many (the others: one)


@dataclass
class StepResult:
    step: str
    name: str
    seconds: float
    details: str
    status: str = "ok"


@dataclass
class PipelineResult:
    steps: list[StepResult] = field(default_factory=list)
    failed: StepResult | None = None
    seconds: float = 0.0  # the steps' wall time (tasks of one step may overlap, so theirs do not add up)

    def table(self) -> str:
        lines = [f"{'step':8} {'name':22} {'status':7} {'seconds':>8}  details"]
        for s in self.steps + ([self.failed] if self.failed else []):
            lines.append(f"{s.step:8} {s.name:22} {s.status:7} {s.seconds:8.1f}  {s.details}")
        lines.append(f"{'total':8} {'':22} {'':7} {self.seconds:8.1f}  wall time: first step's start to last one's end")
        return "\n".join(lines)


def parse_steps(text: str | None) -> tuple[str, ...]:
    """``"import,train"`` -> ("import", "train") in pipeline order; unknown names are an error."""
    from recsys_spark.errors import UserError

    if not text:
        return STEPS
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STEPS]
    if unknown:
        raise UserError(f"unknown step(s) {', '.join(unknown)}; the steps are {', '.join(STEPS)}")
    return tuple(s for s in STEPS if s in chosen)


def run_pipeline(spark, config: Config, steps: tuple[str, ...] = STEPS,
                 wait_minutes: float | None = 0.0) -> PipelineResult:
    """Run the steps in order; a failure is recorded in the result and re-raised (nothing after it runs).

    The run holds the root's pipeline turn (:func:`~recsys_spark.writerlock.pipeline_turn`): another run
    holding it is waited for up to ``wait_minutes``, then a RootBusyError names it. ``None``: take no turn
    (the caller keeps runs apart).
    """
    if wait_minutes is None:
        return _run_steps(spark, config, steps)
    from recsys_spark.jobruns import new_job_id
    from recsys_spark.writerlock import pipeline_turn

    with pipeline_turn(config, new_job_id("pipeline"), wait_minutes, spark):
        return _run_steps(spark, config, steps)


def _run_steps(spark, config: Config, steps: tuple[str, ...]) -> PipelineResult:
    from recsys_spark.writerlock import lock_applies

    result, started = PipelineResult(), time.perf_counter()
    for step in steps:
        tasks = list(_tasks(config, step))
        chains = _chains(tasks)
        at_once = 1 if lock_applies(config) else min(AT_ONCE.get(step, 1), len(chains))
        if at_once > 1:
            with ThreadPoolExecutor(at_once, thread_name_prefix=f"pipeline-{step}") as pool:
                done = [r for chain in pool.map(lambda c: _run_chain(_own_session(spark), step, c), chains)
                        for r in chain]
        else:
            done = _run_chain(spark, step, tasks)
        for ran, error in done:
            if error is not None and result.failed is None:
                result.failed = ran
                error.pipeline_result = result  # the CLI prints the table of what ran
            else:
                result.steps.append(ran)
        result.seconds = time.perf_counter() - started
        if result.failed is not None:
            raise next(error for _, error in done if error is not None)
    return result


def _chains(tasks) -> list[list[tuple]]:
    """The step's tasks grouped by name (an import's is its table), each group in the config's order: the
    groups may run at once, a group's tasks only one after another."""
    chains: dict[str, list[tuple]] = {}
    for task in tasks:
        chains.setdefault(task[0], []).append(task)
    return list(chains.values())


def _run_chain(spark, step: str, tasks) -> list[tuple[StepResult, Exception | None]]:
    """Run tasks in order, stopping at the first that fails: (its result, its error or None) for each run."""
    done = []
    for task in tasks:
        done.append(_run_task(spark, step, *task))
        if done[-1][1] is not None:
            break
    return done


def _run_task(spark, step: str, name: str, work) -> tuple[StepResult, Exception | None]:
    """Run one unit of work with its step's log context: (its result, its error or None)."""
    started = time.perf_counter()
    with step_context(f"{step}:{name}"):
        log.info("%s %s: started", step, name)
        try:
            details = work(spark)
        except Exception as e:
            return StepResult(step, name, time.perf_counter() - started, str(e).splitlines()[0], "FAILED"), e
        log.info("%s %s: done in %.1f s", step, name, time.perf_counter() - started)
        return StepResult(step, name, time.perf_counter() - started, details), None


def _own_session(spark):
    """A session on ``spark``'s context with its own copy of the SQL settings (what a job sets there, such as
    the commit metadata naming it, stays its own)."""
    session = spark.newSession()
    for key, value in spark.conf.getAll.items():
        if spark.conf.isModifiable(key):
            session.conf.set(key, value)
    return session


def _tasks(config: Config, step: str):
    """(name, callable taking the session and returning a one-line summary) for each unit of work of ``step``."""
    if step == "import":
        from recsys_spark.datasets.importer import import_csv
        from recsys_spark.datasets.warehouse import Warehouse

        for job in config.imports:
            def run(spark, job=job):
                r = import_csv(Warehouse(spark, config), job)
                files = "" if r.new_files is None else f"{r.new_files:,} new file(s): "
                return (f"{files}{r.accepted:,} accepted, {r.rejected:,} rejected ({job.mode}), "
                        f"table version {r.version}")
            yield job.dataset, run
    elif step == "ingest":
        from recsys_spark.datasets.ingest import run_ingest

        yield "landing", lambda spark: run_ingest(spark, config).summary().replace("\n", "; ")
    elif step == "train":
        from recsys_spark.solutions.train import train_if_due

        for solution in config.solutions:
            def run(spark, name=solution.name):
                v, why = train_if_due(spark, config, name)
                if v is None:
                    return f"skipped: {why}"
                m = v.metrics
                return (f"version {v.version}, {v.manifest['counts']['interactions']:,} interactions, "
                        f"fit {v.manifest['training_seconds']:.1f} s, NDCG@10 "
                        f"{m.get('normalized_discounted_cumulative_gain_at_10', 0):.4f}, "
                        f"P@10 {m.get('precision_at_10', 0):.4f}")
            yield solution.name, run
    elif step == "batch":
        from recsys_spark.inference.batch import run_batch

        for job in config.batch_jobs:
            def run(spark, name=job.name):
                m = run_batch(spark, config, name).metrics
                return (f"{m['users_served']:,}/{m['users_in']:,} served -> {m['output']}; cost "
                        f"${m['estimated_cost_usd']:.4f} vs managed service ${m['managed_service_cost_usd']:.4f}")
            yield job.name, run
    elif step == "maintain":
        from recsys_spark.datasets.maintenance import run_maintain

        def run(spark):
            r = run_maintain(spark, config)
            return (f"{len(r.actions)} actions, {r.before[0]:,} -> {r.after[0]:,} files, "
                    f"{r.bytes_freed / 1e6:,.1f} MB freed")
        yield "warehouse", run
