"""Offline evaluation: the two protocols (docs/architecture.md), computed with Spark.

* :func:`evaluate_service` -- the managed service's solution metrics: 10% of users held out of training;
  each held-out user's oldest 90% of interactions is the input (folded in by factor models, the history of
  item-based ones), the newest 10% the truth; ``coverage``, ``mean_reciprocal_rank_at_25``,
  ``normalized_discounted_cumulative_gain_at_{5,10,25}``, ``precision_at_{5,10,25}``.
* :func:`evaluate_benchmark` -- the recommenders project's MovieLens benchmark protocol: a 75/25 split
  stratified per item (seed 42), top 10 with seen items removed; ``map``, ``ndcg_at_10``,
  ``precision_at_10``, ``recall_at_10`` as that project defines them (MAP divides by the number of
  relevant items; users in both the truth and the recommendations count).

Both take the solution's weighted interactions: USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE, WEIGHT.

>>> evaluate_service(recipe, interactions, catalog_size=1682)            # doctest: +SKIP
{'coverage': 0.31, 'mean_reciprocal_rank_at_25': 0.42, ...}
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.core.metrics import ranking_means, ranking_sums
from recsys_spark.inference.scoring import history_entries, recommend_on_driver, recommend_users, stored_factors
from recsys_spark.recipes.fitting import Recipe, TrainingSet

SERVICE_KS = (5, 10, 25)
# Held-out users x catalog items scored in the driver's process rather than in Spark tasks: 0.4 s (ALS, rank
# 32) to 1.1 s (sims, 400 neighbours) of one core at this limit, measured, against the seconds of fixed cost a
# Spark scoring job has (the demo pipeline's evaluations).
DRIVER_SCORES = 200_000_000


def holdout_split(interactions: DataFrame, seed: int, fraction: float = 0.1):
    """(training, inputs, truth): ``fraction`` of all users (chosen by a seeded hash among users with at
    least 2 interactions) leave the training data; their oldest 90% become inputs, newest 10% (at least
    one interaction) the truth."""
    per_user = interactions.groupBy("USER_ID").agg(F.count(F.lit(1)).alias("N"))
    n_users = per_user.count()
    held = (per_user.where("N >= 2").orderBy(F.xxhash64("USER_ID", F.lit(seed)), "USER_ID")
            .limit(max(1, round(fraction * n_users))).select("USER_ID"))
    held = held.persist()
    training = interactions.join(F.broadcast(held), "USER_ID", "left_anti")
    order = Window.partitionBy("USER_ID").orderBy("TIMESTAMP", "ITEM_ID", "EVENT_TYPE")
    ranked = (interactions.join(F.broadcast(held), "USER_ID")
              .withColumn("RN", F.row_number().over(order))
              .withColumn("N", F.count(F.lit(1)).over(Window.partitionBy("USER_ID")))
              .withColumn("INPUTS", F.col("N") - F.greatest(F.lit(1), F.round(F.col("N") * 0.1).cast("int"))))
    inputs = ranked.where("RN <= INPUTS").drop("RN", "N", "INPUTS")
    truth = ranked.where("RN > INPUTS").drop("RN", "N", "INPUTS")
    return training, inputs, truth, held


def stratified_split(interactions: DataFrame, ratio: float = 0.75, seed: int = 42):
    """(training, test): per item, ``ratio`` of its interactions (in a seeded random order) go to training
    (the recommenders project's ``python_stratified_split(filter_by="item")``)."""
    order = Window.partitionBy("ITEM_ID").orderBy(
        F.xxhash64("USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", F.lit(seed)), "USER_ID", "TIMESTAMP")
    ranked = (interactions.withColumn("RN", F.row_number().over(order))
              .withColumn("N", F.count(F.lit(1)).over(Window.partitionBy("ITEM_ID"))))
    in_training = F.col("RN") <= F.round(F.col("N") * ratio)
    return ranked.where(in_training).drop("RN", "N"), ranked.where(~in_training).drop("RN", "N")


def truth_lists(truth: DataFrame) -> DataFrame:
    """USER_ID, TRUTH (distinct item IDs)."""
    return truth.groupBy("USER_ID").agg(F.array_distinct(F.collect_list("ITEM_ID")).alias("TRUTH"))


def ranking_metrics(recs: DataFrame | pa.Table, truth: DataFrame | pa.Table, ks: tuple[int, ...],
                    users: str = "truth") -> dict:
    """Means over users of :mod:`recsys_spark.core.metrics` (precision, recall, NDCG at each k, MAP, MRR)
    and ``users``. ``recs``: USER_ID, ITEMS (best first); ``truth``: USER_ID, TRUTH; both Spark DataFrames
    (each task sums its rows) or both Arrow tables (summed here). ``users="truth"``: every truth user
    counts (no recommendations = 0); ``"both"``: only users with recommendations and truth."""
    if isinstance(recs, pa.Table):
        at = pc.index_in(truth["USER_ID"], recs["USER_ID"])
        truth = truth if users == "truth" else truth.filter(at.is_valid())
        at = at if users == "truth" else at.drop_null()
        return ranking_means(ranking_sums(recs["ITEMS"].take(at), truth["TRUTH"], ks))
    joined = truth.join(recs.select("USER_ID", "ITEMS"), "USER_ID", "left" if users == "truth" else "inner")
    names = list(ranking_sums(pa.array([], pa.list_(pa.string())), pa.array([], pa.list_(pa.string())), ks))

    def sums(batches):
        for batch in batches:
            yield pa.RecordBatch.from_pydict(
                {n: [v] for n, v in ranking_sums(batch.column("ITEMS"), batch.column("TRUTH"), ks).items()})

    row = (joined.select("ITEMS", "TRUTH").mapInArrow(sums, ", ".join(f"{n} double" for n in names))
           .agg(*[F.sum(n).alias(n) for n in names]).first())
    return ranking_means({n: row[n] or 0.0 for n in names})


def evaluate_service(recipe: Recipe, interactions: DataFrame, catalog_size: int, seed: int = 42,
                     on_driver: bool | None = None) -> dict:
    """The managed service's metrics for ``recipe`` on ``interactions`` (see the module docstring).
    ``on_driver``: score the held-out users in this process (default: when they take at most
    :data:`DRIVER_SCORES` scores), or in Spark tasks."""
    training, inputs, truth, held = holdout_split(interactions, seed)
    data = TrainingSet.build(training)
    model = recipe.fit(data)
    k, exclude_seen, entries = max(SERVICE_KS), recipe.settings.exclude_seen, history_entries(inputs, model)
    recs = None
    try:
        if on_driver is None:
            on_driver = held.count() * model.n_items <= DRIVER_SCORES
        if on_driver:
            recs = recommend_on_driver(model, entries, held, k, exclude_seen)
            truth = truth_lists(truth).toArrow()
            recommended = len(pc.unique(pc.list_flatten(recs["ITEMS"])))
        else:  # 90% of a ninth of the training rows
            recs = recommend_users(model, entries, k, exclude_seen, users=held, rows=data.rows // 10).persist()
            truth = truth_lists(truth)
            recommended = recs.select(F.explode("ITEMS")).distinct().count()
        m = ranking_metrics(recs, truth, SERVICE_KS, users="truth")
        out = {"coverage": recommended / max(catalog_size, 1), "mean_reciprocal_rank_at_25": m["mrr"]}
        out |= {f"normalized_discounted_cumulative_gain_at_{k}": m[f"ndcg_at_{k}"] for k in SERVICE_KS}
        out |= {f"precision_at_{k}": m[f"precision_at_{k}"] for k in SERVICE_KS}
        out["test_users"] = int(m["users"])
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in out.items()}
    finally:
        if isinstance(recs, DataFrame):
            recs.unpersist()
        held.unpersist()


def evaluate_benchmark(recipe: Recipe, interactions: DataFrame, k: int = 10, seed: int = 42) -> dict:
    """The recommenders project's MovieLens benchmark protocol (see the module docstring)."""
    training, test = stratified_split(interactions, 0.75, seed)
    training = training.persist()
    try:
        data = TrainingSet.build(training)
        model = recipe.fit(data)
        recs = recommend_users(model, history_entries(training, model), k, exclude_seen=True,
                               factors=stored_factors(training.sparkSession, model), rows=data.rows)
        m = ranking_metrics(recs, truth_lists(test), (k,), users="both")
        return {"map": round(m["map"], 6), f"ndcg_at_{k}": round(m[f"ndcg_at_{k}"], 6),
                f"precision_at_{k}": round(m[f"precision_at_{k}"], 6), f"recall_at_{k}": round(m[f"recall_at_{k}"], 6),
                "users": int(m["users"])}
    finally:
        training.unpersist()
