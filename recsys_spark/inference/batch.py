"""The batch inference job: requests in, the service's JSON lines out, with run metrics and cost.

Phases (each timed in ``_metrics.json``): *read* (the input lines or every known user, the model, the
users' fresh histories, the filter compiled once per distinct ``filterValues`` binding), *score and write*
(one vectorised kernel per partition, lines written once, into the run's own folder of the output), *commit*
(the output's manifest switched to that folder; see :mod:`.output`).

>>> result = run_batch(spark, config, "weekly-mail")          # doctest: +SKIP
>>> print(result.summary())                                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from recsys_spark.config import ALL_USERS, Config
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.errors import UserError
from recsys_spark.core.kernels.scorer import KernelSettings
from recsys_spark.core.registry import entry
from recsys_spark.inference import output as out
from recsys_spark.inference.filters import compile_plans, plan_user_lists
from recsys_spark.inference.frame import no_filter, score_frame, scoring_partitions
from recsys_spark.inference.progress import Progress
from recsys_spark.inference.requests import all_users, read_requests
from recsys_spark.inference.scoring import history_entries
from recsys_spark.jobruns import job_run, new_job_id
from recsys_spark.killpoints import kill_point
from recsys_spark.leases import lease
from recsys_spark.runmetrics import RunMetrics
from recsys_spark.solutions.snapshot import weighted_interactions
from recsys_spark.solutions.store import get_version, user_factors, version_store

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    job: str
    output: str
    metrics: dict

    def summary(self) -> str:
        m = self.metrics
        return (f"batch {self.job}: {m['users_served']:,} of {m['users_in']:,} lines served, {m['users_failed']:,} "
                f"failed, in {m['wall_seconds']:.1f} s ({m['users_per_second']:,.0f} lines/s) -> {self.output}\n"
                f"  executor time {m['executor_run_seconds']:.1f} s, CPU {m['executor_cpu_seconds']:.1f} s, "
                f"{m['allocated_core_hours']:.4f} core-hours = ${m['estimated_cost_usd']:.4f} "
                f"(${m['cost_per_1000_users_usd']:.5f} per 1000); the managed service: "
                f"${m['managed_service_cost_usd']:.4f} (${m['managed_service_per_1000_users_usd']} per 1000)")


def run_batch(spark, config: Config, name: str) -> BatchResult:
    """Run the config's batch job ``name`` (see the module docstring)."""
    job = config.batch_job(name)
    solution = config.solution(job.solution)
    version = get_version(spark, config, job.solution, None if job.version == "latest" else job.version)
    kind = entry(version.recipe).request
    if job.input == ALL_USERS and kind == "ranking":
        raise UserError(f"batch job {name!r}: personalized-ranking needs an itemList per user; `all_users` "
                        "cannot supply one, give a JSON-lines input file")
    warehouse = Warehouse(spark, config)
    run_id = new_job_id("batch")
    started_at = datetime.now(timezone.utc)
    inputs = {"input": job.input, "output": job.output, "version": version.version, "filter": job.filter}
    # One run at a time per output folder: another's recovery would delete this run's staging folder.
    with job_run(warehouse, "batch", name, inputs, job_id=run_id) as run, \
            lease(warehouse, f"batch output {job.output}", run_id):
        out.recover(spark, job.output)
        with RunMetrics(spark, run_id) as metrics:
            with metrics.phase("read"):
                model = version_store(spark, config).load_model(version, user_factors=False)
                entries = history_entries(weighted_interactions(warehouse, solution, None), model)
                factors = user_factors(spark, version)
                requests, users, plans, cached = None, None, [], None
                if job.input == ALL_USERS and not job.filter:
                    users = _users_dataset(warehouse)  # scored with everyone in the interactions
                else:
                    if job.input == ALL_USERS:
                        requests, bindings = all_users(_known_users(warehouse, entries)), [None]
                    else:
                        requests = read_requests(spark, job.input, kind)
                        if job.filter:  # read twice: for the distinct bindings, then for scoring
                            requests = cached = requests.persist()
                        bindings = ([r.BINDING for r in requests.where("ERROR IS NULL").select("BINDING")
                                     .distinct().collect()] if job.filter else [None])
                        # Only the requested users' histories and factors go through the shuffle.
                        wanted = requests.where(F.col("USER_ID").isNotNull()).select("USER_ID").distinct()
                        entries = entries.join(wanted, "USER_ID", "left_semi")
                        factors = None if factors is None else factors.join(wanted, "USER_ID", "left_semi")
                    plans, requests = _filters(spark, warehouse, job.filter, requests, bindings, model)
            fresh_after = int(version.manifest.get("newest_interaction", 2**62)) if factors is not None else None
            settings = KernelSettings(job.num_results, solution.recipe_settings().exclude_seen, plans,
                                      kind == "ranking", fresh_after)
            done = spark.sparkContext.accumulator(0)
            observed = Observation(f"counts-{run_id}")
            partitions = scoring_partitions(spark, int(version.manifest.get("counts", {}).get("interactions", 0)))
            scored = score_frame(model, settings, partitions, requests=requests, entries=entries, factors=factors,
                                 users=users, lines=True, done=done).observe(
                observed, F.count(F.lit(1)).alias("lines"), F.count_if(F.col("FAILED")).alias("failed"))
            with metrics.phase("score_and_write"), Progress(spark, run_id, done, "scoring"):
                out.write_run(spark, scored.select("value"), job.output, run_id)
            counts = observed.get
            lines, failed = int(counts["lines"]), int(counts["failed"])
        wall = metrics.wall_seconds
        served = lines - failed
        facts = {
            "run_id": run_id, "job": name, "solution": job.solution, "solution_version": version.version,
            "recipe": version.recipe, "filter": job.filter, "input": job.input, "output": job.output,
            "started_at": started_at.isoformat(timespec="seconds"),
            "ended_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall_seconds": round(wall, 3), "phase_seconds": {k: round(v, 3) for k, v in metrics.phases.items()},
            "users_in": lines, "users_served": served, "users_failed": failed, "items": model.n_items,
            "num_results": job.num_results, "users_per_second": round(lines / max(wall, 1e-9), 1),
            "executor_run_seconds": round(metrics.executor_seconds, 3),
            "executor_cpu_seconds": round(metrics.cpu_seconds, 3), "tasks": metrics.tasks, "cores": metrics.cores,
            "peak_execution_memory_bytes": metrics.peak_execution_memory,
            "shuffle_write_bytes": metrics.shuffle_write_bytes,
            **metrics.cost(config.cost.price_per_core_hour_usd),
        }
        facts["cost_per_1000_users_usd"] = round(facts["estimated_cost_usd"] / max(lines, 1) * 1000, 8)
        facts["managed_service_per_1000_users_usd"] = config.cost.compare_per_1000_users_usd
        facts["managed_service_cost_usd"] = round(lines / 1000 * config.cost.compare_per_1000_users_usd, 6)
        started = time.perf_counter()
        out.commit_output(spark, job.output, run_id, facts)
        facts["phase_seconds"]["commit"] = round(time.perf_counter() - started, 3)
        if cached is not None:
            cached.unpersist()
        _record(run, facts)
        kill_point("batch.committed")
    return BatchResult(name, job.output, facts)


def _record(run, facts: dict) -> None:
    run.counts.update({"lines": facts["users_in"], "served": facts["users_served"], "failed": facts["users_failed"]})
    run.metrics.update({k: facts[k] for k in ("solution_version", "wall_seconds", "executor_run_seconds",
                                              "estimated_cost_usd", "managed_service_cost_usd")})


def _users_dataset(warehouse: Warehouse) -> DataFrame | None:
    """USER_ID of the users dataset, when the group has one."""
    if warehouse.config.schema("users") is None or not warehouse.exists(warehouse.path("users")):
        return None
    return warehouse.read("users").select("USER_ID")


def _known_users(warehouse: Warehouse, entries: DataFrame) -> DataFrame:
    """Every known user once (USER_ID): those with interactions and those only in the users dataset."""
    users = entries.select("USER_ID")
    if (listed := _users_dataset(warehouse)) is not None:
        users = users.unionByName(listed)
    return users.distinct()


def _filters(spark, warehouse: Warehouse, name: str | None, requests: DataFrame, bindings: list[str | None],
             model):
    """The filter compiled once per distinct binding (``bindings``: the requests' distinct BINDING values),
    and the requests with BINDING_ID and their users' filter lists (F_INCLUDE, F_EXCLUDE, F_APPLIES)."""
    if name is None:
        return [], requests.select("*", *no_filter())
    plans = compile_plans(warehouse, name, bindings, model.item_ids)
    index = spark.createDataFrame([(b, i) for i, b in enumerate(bindings)], "BINDING string, BINDING_ID int")
    frame = requests.join(F.broadcast(index), requests["BINDING"].eqNullSafe(index["BINDING"]), "left") \
        .drop(index["BINDING"])
    wanted = requests.where(F.col("USER_ID").isNotNull()).select("USER_ID").distinct()
    lists = plan_user_lists(warehouse, name, plans, wanted)
    if lists is None:
        frame = frame.select("*", *[F.lit(None).cast(t).alias(c) for c, t in (
            ("include", "array<string>"), ("exclude", "array<string>"), ("applies", "array<int>"))])
    else:
        frame = frame.join(lists, ["USER_ID", "BINDING_ID"], "left")
    return plans, frame.select(*requests.columns, F.coalesce("BINDING_ID", F.lit(0)).alias("BINDING_ID"),
                               F.col("include").alias("F_INCLUDE"), F.col("exclude").alias("F_EXCLUDE"),
                               F.col("applies").alias("F_APPLIES"))
