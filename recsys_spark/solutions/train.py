"""Training and re-evaluation of solutions: pin a snapshot, check it, evaluate, fit, save a version.

>>> version = train_solution(spark, config, "top-picks")               # doctest: +SKIP
>>> version.metrics["normalized_discounted_cumulative_gain_at_10"]      # doctest: +SKIP
0.41
"""

from __future__ import annotations

import logging
import time

from recsys_spark.config import Config, Solution
from recsys_spark.core.registry import entry
from recsys_spark.core.store import SolutionVersion
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.errors import UserError
from recsys_spark.evaluation import evaluate_benchmark, evaluate_service
from recsys_spark.jobruns import job_run
from recsys_spark.killpoints import kill_point
from recsys_spark.recipes import recipe_for
from recsys_spark.recipes.fitting import TrainingSet
from recsys_spark.solutions.retrain import retrain_due
from recsys_spark.solutions.snapshot import catalog_items, data_counts, weighted_interactions
from recsys_spark.solutions.store import get_version, version_store

log = logging.getLogger(__name__)


def train_solution(spark, config: Config, name: str, evaluate: bool = True) -> SolutionVersion:
    """Fit the solution on the current snapshot, evaluate it (the service's protocol), save a new version."""
    solution = config.solution(name)
    settings = solution.recipe_settings()
    warehouse = Warehouse(spark, config)
    pinned = warehouse.versions()
    if "interactions" not in pinned:
        raise UserError(f"solution {name!r} needs the interactions dataset, which has no table yet at "
                        f"{warehouse.path('interactions')}; import it first")
    with job_run(warehouse, "train", name, {"recipe": solution.recipe, "datasets": pinned}) as run:
        interactions = weighted_interactions(warehouse, solution, pinned["interactions"]).persist()
        try:
            counts = data_counts(interactions, catalog_items(warehouse, pinned))
            entry(solution.recipe).check(name, counts, settings)
            recipe = recipe_for(solution.recipe, settings)
            metrics = {}
            if evaluate:
                started = time.perf_counter()
                metrics = evaluate_service(recipe, interactions, counts["catalog"], seed=settings.seed)
                log.info("%s: evaluated in %.1f s", name, time.perf_counter() - started)
            started = time.perf_counter()
            training = TrainingSet.build(interactions, f"{config.root.rstrip('/')}/_checkpoints/train-{name}")
            model = recipe.fit(training)
            seconds = time.perf_counter() - started
        finally:
            interactions.unpersist()
        kill_point("train.fitted")
        version = version_store(spark, config).save(name, model, {
            "recipe": solution.recipe, "settings": settings.model_dump(), "events": solution.events.model_dump(),
            "datasets": pinned, "counts": counts, "training_seconds": round(seconds, 3), "metrics": metrics,
            "job_id": run.job_id, "newest_interaction": training.newest_timestamp})
        log.info("solution %s: version %s written to %s", name, version.version, version.path)
        kill_point("train.saved")
        run.counts.update(counts)
        run.metrics.update({"version": version.version, "training_seconds": round(seconds, 3), **metrics})
    return version


def train_if_due(spark, config: Config, name: str, evaluate: bool = True,
                 force: bool = False) -> tuple[SolutionVersion | None, str]:
    """Train ``name`` when its ``retrain`` policy says so (or ``force``): (the new version, why); when not,
    (None, why), recorded in ``_jobs`` as a SKIPPED train job.

    >>> version, why = train_if_due(spark, config, "top-picks")        # doctest: +SKIP
    >>> version, why                                                    # doctest: +SKIP
    (None, 'no dataset table changed since version 20261130T020101-ab12cd')
    """
    due, why = (True, "forced") if force else retrain_due(spark, config, name)
    if due:
        log.info("solution %s: training (%s)", name, why)
        return train_solution(spark, config, name, evaluate), why
    with job_run(Warehouse(spark, config), "train", name, {"recipe": config.solution(name).recipe}) as run:
        run.status = "SKIPPED"
        run.metrics["skipped"] = why
    log.info("solution %s: not trained: %s", name, why)
    return None, why


def evaluate_version(spark, config: Config, solution: str, version: str | None = None,
                     protocol: str = "service") -> tuple[SolutionVersion, dict]:
    """Re-run an offline evaluation of a version on the snapshot it was trained on (its manifest's table
    versions and settings): ``service`` (the managed service's metrics) or ``benchmark`` (the recommenders
    project's protocol: stratified 75/25 per item, k = 10)."""
    found = get_version(spark, config, solution, version)
    m = found.manifest
    trained = Solution.model_validate({"name": solution, "recipe": m["recipe"], "settings": m["settings"],
                                       "events": m["events"]})
    warehouse = Warehouse(spark, config)
    with job_run(warehouse, "evaluate", solution, {"version": found.version, "protocol": protocol}) as run:
        interactions = weighted_interactions(warehouse, trained, m["datasets"]["interactions"]).persist()
        try:
            recipe = recipe_for(m["recipe"], m["settings"])
            if protocol == "benchmark":
                metrics = evaluate_benchmark(recipe, interactions, seed=42)
            else:
                catalog = data_counts(interactions, catalog_items(warehouse, m["datasets"]))["catalog"]
                metrics = evaluate_service(recipe, interactions, catalog, seed=recipe.settings.seed)
        finally:
            interactions.unpersist()
        run.metrics.update(metrics)
    return found, metrics


def format_versions(versions: list[SolutionVersion]) -> str:
    """A text table of versions, newest first: version, recipe, data, training time, headline metrics."""
    if not versions:
        return "no trained versions"
    lines = [f"{'solution':16} {'version':24} {'recipe':22} {'interactions':>12} {'train s':>8} "
             f"{'NDCG@10':>8} {'P@10':>7} {'MRR@25':>7} {'coverage':>8}"]
    for v in sorted(versions, key=lambda v: v.version, reverse=True):
        m = v.metrics
        fmt = lambda key: f"{m[key]:.4f}" if key in m else "-"  # noqa: E731
        interactions = v.manifest.get("counts", {}).get("interactions", 0)
        lines.append(f"{v.solution:16} {v.version:24} {v.recipe:22} {interactions:>12,} "
                     f"{v.manifest.get('training_seconds', 0):>8.1f} "
                     f"{fmt('normalized_discounted_cumulative_gain_at_10'):>8} "
                     f"{fmt('precision_at_10'):>7} {fmt('mean_reciprocal_rank_at_25'):>7} {fmt('coverage'):>8}")
    return "\n".join(lines)
