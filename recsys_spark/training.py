"""Solution versions: train, evaluate, persist, list, load.

A solution version is an immutable folder ``<root>/solutions/<solution>/<version>/`` holding the model's
tables as Parquet and ``manifest.json`` (written last, so a folder without one is an unfinished run and is
ignored): the recipe, every setting with defaults filled in, the event settings, the Delta version of each
table it trained on, row counts, training seconds and the offline metrics.

>>> version = train_solution(spark, config, "top-picks")               # doctest: +SKIP
>>> version.manifest["metrics"]["normalized_discounted_cumulative_gain_at_10"]   # doctest: +SKIP
0.41
>>> model = latest_version(spark, config, "top-picks").load_model(spark)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark import storage
from recsys_spark.config import Config, Solution
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.errors import UserError
from recsys_spark.jobruns import job_run, new_job_id
from recsys_spark.recipes import recipe_for
from recsys_spark.recipes.base import Model, TrainingSet, to_pandas, to_spark

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
USER_FACTORS = "users"  # the table of trained users' factors (USER_ID, FACTORS), where a recipe has one


@dataclass(frozen=True)
class SolutionVersion:
    """One trained version: where it is and what its manifest says."""

    solution: str
    version: str
    path: str
    manifest: dict

    @property
    def recipe(self) -> str:
        return self.manifest["recipe"]

    @property
    def metrics(self) -> dict:
        return self.manifest.get("metrics", {})

    def user_factors(self, spark):
        """The trained users' factors (USER_ID, FACTORS) as a DataFrame, or None for recipes without them."""
        if USER_FACTORS not in self.manifest["tables"]:
            return None
        return spark.read.parquet(f"{self.path}/{USER_FACTORS}")

    def load_model(self, spark, user_factors: bool = True) -> Model:
        """The fitted model, from its Parquet tables only (no training data is read). ``user_factors=False``
        leaves the per-user table out (batch inference joins it as a DataFrame instead)."""
        recipe = recipe_for(self.recipe, self.manifest["settings"])
        names = [n for n in self.manifest["tables"] if user_factors or n != USER_FACTORS]
        tables = {name: to_pandas(spark.read.parquet(f"{self.path}/{name}")) for name in names}
        return recipe.model_class.from_tables(tables, recipe.settings)


def solution_path(config: Config, solution: str) -> str:
    return f"{config.root.rstrip('/')}/solutions/{solution}"


def list_versions(spark, config: Config, solution: str) -> list[SolutionVersion]:
    """The solution's complete versions, oldest first."""
    base = solution_path(config, solution)
    out = []
    for name in storage.list_folders(spark, base):
        manifest = f"{base}/{name}/{MANIFEST}"
        if storage.path_exists(spark, manifest):
            out.append(SolutionVersion(solution, name, f"{base}/{name}", json.loads(storage.read_text(spark, manifest))))
    return out


def get_version(spark, config: Config, solution: str, version: str | None = None) -> SolutionVersion:
    """The named version, or the newest one; a clear error when there is none."""
    config.solution(solution)
    versions = list_versions(spark, config, solution)
    if not versions:
        raise UserError(f"solution {solution!r} has no trained version yet; run `recsys-spark train "
                        f"--solution {solution}` first")
    if version is None:
        return versions[-1]
    for v in versions:
        if v.version == version:
            return v
    raise UserError(f"solution {solution!r} has no version {version!r}; versions: "
                    + ", ".join(v.version for v in versions))


def weighted_interactions(warehouse: Warehouse, solution: Solution, version: int | None) -> DataFrame:
    """The interactions a solution trains on, at a pinned table version: USER_ID, ITEM_ID, TIMESTAMP,
    EVENT_TYPE, WEIGHT. Event types outside ``events.types`` are dropped, the rest weighted by it; events
    below ``events.value_threshold`` (or without a value) are dropped. Unknown event types in the weights
    are an error naming the types the data has."""
    frame = warehouse.read("interactions", version)
    events = solution.events
    if events.value_threshold is not None:
        frame = frame.where(F.col("EVENT_VALUE") >= events.value_threshold)
    if events.types is None:
        return frame.select("USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", F.lit(1.0).alias("WEIGHT"))
    present = {r[0] for r in warehouse.read("interactions", version).select("EVENT_TYPE").distinct().collect()}
    unknown = sorted(set(events.types) - present)
    if unknown:
        raise UserError(f"solution {solution.name!r}: events.types names event type(s) {', '.join(unknown)} that "
                        f"the interactions do not have; their event types: {', '.join(sorted(present)) or 'none'}")
    weight = F.create_map(*[x for t, w in sorted(events.types.items()) for x in (F.lit(t), F.lit(float(w)))])
    return (frame.where(F.col("EVENT_TYPE").isin(list(events.types)))
            .select("USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", weight[F.col("EVENT_TYPE")].alias("WEIGHT"))
            .where(F.col("WEIGHT") > 0))


def data_counts(interactions: DataFrame) -> dict[str, int]:
    """interactions, users, items, and users with at least two interactions, in one pass."""
    per_user = interactions.groupBy("USER_ID").agg(F.count(F.lit(1)).alias("N"))
    row = per_user.agg(F.sum("N").alias("interactions"), F.count(F.lit(1)).alias("users"),
                       F.sum(F.when(F.col("N") >= 2, 1).otherwise(0)).alias("users_with_two")).first()
    items = interactions.select("ITEM_ID").distinct().count()
    return {"interactions": int(row["interactions"] or 0), "users": int(row["users"] or 0),
            "users_with_two": int(row["users_with_two"] or 0), "items": items}


def check_minimums(solution: Solution, counts: dict[str, int]) -> None:
    s = solution.recipe_settings()
    problems = []
    if counts["interactions"] < s.min_interactions:
        problems.append(f"{counts['interactions']:,} interactions, at least {s.min_interactions:,} needed "
                        "(setting min_interactions)")
    if counts["users_with_two"] < s.min_users_with_two:
        problems.append(f"{counts['users_with_two']:,} users with 2 or more interactions, at least "
                        f"{s.min_users_with_two:,} needed (setting min_users_with_two)")
    if problems:
        raise UserError(f"solution {solution.name!r} cannot be trained: after its event settings the data has "
                        + "; ".join(problems))


def catalog_size(warehouse: Warehouse, interactions: DataFrame, versions: dict[str, int]) -> int:
    """Distinct items in the interactions and the items dataset (the service's coverage denominator)."""
    items = interactions.select("ITEM_ID")
    if "items" in versions:
        items = items.union(warehouse.read("items", versions["items"]).select("ITEM_ID"))
    return items.distinct().count()


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
            counts = data_counts(interactions)
            check_minimums(solution, counts)
            recipe = recipe_for(solution.recipe, settings)
            if solution.recipe == "ease":
                from recsys_spark.recipes.ease import check_size

                check_size(counts["items"], settings)
            metrics = {}
            if evaluate:
                started = time.perf_counter()
                metrics = evaluate_service_metrics(recipe, interactions, catalog_size(warehouse, interactions, pinned))
                log.info("%s: evaluated in %.1f s", name, time.perf_counter() - started)
            started = time.perf_counter()
            checkpoint = f"{config.root.rstrip('/')}/_checkpoints/train-{name}"
            training = TrainingSet.build(interactions, checkpoint)
            model = recipe.fit(training)
            seconds = time.perf_counter() - started
        finally:
            interactions.unpersist()
        version = save_version(spark, config, solution, model, {
            "datasets": pinned, "counts": counts, "training_seconds": round(seconds, 3), "metrics": metrics,
            "job_id": run.job_id, "newest_interaction": training.newest_timestamp})
        run.counts.update(counts)
        run.metrics.update({"version": version.version, "training_seconds": round(seconds, 3), **metrics})
    return version


def evaluate_service_metrics(recipe, interactions: DataFrame, catalog: int) -> dict:
    from recsys_spark.evaluation import evaluate_service

    return evaluate_service(recipe, interactions, catalog, seed=recipe.settings.seed)


def save_version(spark, config: Config, solution: Solution, model: Model, facts: dict) -> SolutionVersion:
    """Write the model's tables, then the manifest (last: its presence marks the version complete)."""
    version = new_job_id("v").removeprefix("v-")
    path = f"{solution_path(config, solution.name)}/{version}"
    tables = model.tables()
    for table_name, frame in tables.items():
        to_spark(spark, frame).coalesce(1).write.mode("errorifexists").parquet(f"{path}/{table_name}")
    manifest = {
        "solution": solution.name, "version": version, "recipe": solution.recipe,
        "settings": solution.recipe_settings().model_dump(), "events": solution.events.model_dump(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "items": model.n_items,
        "tables": sorted(tables), **facts,
    }
    storage.write_text(spark, f"{path}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True, default=str))
    log.info("solution %s: version %s written to %s", solution.name, version, path)
    return SolutionVersion(solution.name, version, path, manifest)


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


def evaluate_version(spark, config: Config, solution: str, version: str | None = None,
                     protocol: str = "service") -> tuple[SolutionVersion, dict]:
    """Re-run an offline evaluation of a version on the snapshot it was trained on (its manifest's table
    versions and settings): ``service`` (the managed service's metrics) or ``benchmark`` (the recommenders
    project's protocol: stratified 75/25 per item, k = 10)."""
    from recsys_spark.evaluation import evaluate_benchmark

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
                metrics = evaluate_service_metrics(recipe, interactions,
                                                   catalog_size(warehouse, interactions, m["datasets"]))
        finally:
            interactions.unpersist()
        run.metrics.update(metrics)
    return found, metrics
