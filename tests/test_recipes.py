"""Recipes on a planted structure, the top-k kernel, the ALS solver and the metric definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from recipe_helpers import planted
from recsys_spark.evaluation import evaluate_service, ranking_metrics
from recsys_spark.inference.scoring import history_entries, recommend_users, stored_factors
from recsys_spark.core.kernels.topk import top_k
from recsys_spark.core.models.base import UserBlock
from recsys_spark.core.registry import RECIPES as REGISTRY
from recsys_spark.core.store import ArrowFiles, VersionStore
from recsys_spark.recipes import TrainingSet, recipe_for, sims
from recsys_spark.core.kernels.als import gram, solve_block
from recsys_spark.recipes.fitting import to_spark
from recsys_spark.solutions.store import SparkFiles
from recsys_spark.core.models.ranked import trend_scores
from recsys_spark.core.settings import TrendingSettings

SMALL = {"min_interactions": 1, "min_users_with_two": 1}
RECIPES = {
    "user-personalization": {"factors": 4, "iterations": 10, "regularization": 1.0, "alpha": 5.0},
    "sims": {"min_cointeraction_count": 1},
    "ease": {"regularization": 300.0},
    "popularity-count": {},
}


@pytest.fixture(scope="module")
def interactions(spark):
    frame = planted()
    frame["WEIGHT"] = np.where(frame["EVENT_TYPE"] == "buy", 3.0, 1.0)
    return to_spark(spark, frame.drop(columns="EVENT_VALUE")).persist()


def group_share(recs) -> float:
    """Share of recommended items that belong to the user's own group."""
    rows = recs.select("USER_ID", F.explode("ITEMS").alias("ITEM")).collect()
    return sum(r.ITEM[0].lower() == r.USER_ID[0] for r in rows) / len(rows)


@pytest.mark.parametrize("name", [n for n in RECIPES if n != "popularity-count"])
def test_recommendations_follow_the_planted_groups_and_beat_popularity(spark, interactions, name):
    model = recipe_for(name, {**SMALL, **RECIPES[name]}).fit(TrainingSet.build(interactions))
    recs = recommend_users(model, history_entries(interactions, model), 5, factors=stored_factors(spark, model))
    assert recs.count() == 80
    assert group_share(recs) > 0.9
    seen = {(r.USER_ID, r.ITEM_ID) for r in interactions.select("USER_ID", "ITEM_ID").collect()}
    assert not any((r.USER_ID, item) in seen for r in recs.collect() for item in r.ITEMS)

    mine = evaluate_service(recipe_for(name, {**SMALL, **RECIPES[name]}), interactions, 40)
    popular = evaluate_service(recipe_for("popularity-count", SMALL), interactions, 40)
    assert mine["test_users"] == popular["test_users"] == 8
    assert mine["precision_at_5"] > popular["precision_at_5"]
    assert mine["normalized_discounted_cumulative_gain_at_10"] > popular["normalized_discounted_cumulative_gain_at_10"]


def test_related_items_stay_in_their_group(spark, interactions):
    for name in ("sims", "ease"):
        model = recipe_for(name, {**SMALL, **RECIPES[name]}).fit(TrainingSet.build(interactions))
        query = list(model.item_ids).index("A0")
        scores = model.score_items(np.array([query]))
        scores[0, query] = -np.inf
        idx, _ = top_k(scores, 5)
        assert all(model.item_ids[i].startswith("A") for i in idx[0]), name


def test_unknown_users_fold_in_and_users_without_history_get_popular_items(spark, interactions):
    recipe = recipe_for("user-personalization", {**SMALL, **RECIPES["user-personalization"]})
    model = recipe.fit(TrainingSet.build(interactions.where(~F.col("USER_ID").isin("a0", "b1"))))
    newcomers = interactions.where(F.col("USER_ID").isin("a0", "b1"))
    users = spark.createDataFrame([("a0",), ("b1",), ("nobody",)], "USER_ID string")
    recs = {r.USER_ID: r for r in recommend_users(model, history_entries(newcomers, model), 5, users=users).collect()}
    assert not recs["a0"].FALLBACK and not recs["b1"].FALLBACK
    assert sum(i.startswith("A") for i in recs["a0"].ITEMS) >= 4
    assert sum(i.startswith("B") for i in recs["b1"].ITEMS) >= 4
    popular = model.item_ids[np.argsort(-model.popularity, kind="stable")[:5]]
    assert recs["nobody"].FALLBACK and list(recs["nobody"].ITEMS) == list(popular)


def test_local_and_blocked_engines_give_the_same_model(spark, interactions, caplog, tmp_path):
    data = TrainingSet.build(interactions)
    fit = lambda **extra: recipe_for(  # noqa: E731
        "user-personalization", {**SMALL, **RECIPES["user-personalization"], **extra}).fit(data)
    with caplog.at_level("INFO", logger="recsys_spark.recipes.als"):
        local = fit()  # auto: far fewer interactions than local_max_interactions
        blocked = fit(local_max_interactions=data.rows - 1)
    assert [m for m in caplog.messages if "engine" in m] == [
        f"user-personalization: {engine} engine, {data.rows} interactions" for engine in ("local", "blocked")]
    # The blocked engine keeps its users on the executors; saved, they are written from there.
    saved = VersionStore(str(tmp_path), SparkFiles(spark)).save("s", blocked, {"recipe": "user-personalization",
                                                                             "settings": {}})
    assert saved.has_user_factors and spark.read.parquet(f"{saved.path}/users").count() == 80
    # Same users, same factors up to rounding (float32 CG turns a different summation order into ~1e-3
    # here; factors are ~1).
    local_users, blocked_users = local.users.to_pydict(), blocked.users.toArrow().to_pydict()
    assert sorted(local_users["USER_ID"]) == sorted(blocked_users["USER_ID"])
    mine = dict(zip(local_users["USER_ID"], local_users["FACTORS"]))
    assert all(np.allclose(mine[u], f, atol=5e-3) for u, f in zip(blocked_users["USER_ID"], blocked_users["FACTORS"]))
    assert np.allclose(local.item_factors, blocked.item_factors, atol=5e-3)
    assert np.abs(local.item_factors).max() > 0.5  # trained, not the tiny initial values


def test_auto_keeps_the_local_engine_within_a_cluster_mode_drivers_memory_overhead():
    from recsys_spark.core.settings import FactorSettings
    from recsys_spark.recipes.als import choose_engine

    s, cluster = FactorSettings(), {"spark.submit.deployMode": "cluster"}
    assert choose_engine(s, 2_000_000, {}) == "local"  # client mode: the driver is not in a container
    assert choose_engine(s, 6_000_000, {}) == "blocked"  # over local_max_interactions
    # Default overhead max(384 MiB, 10% of 1 GiB): 384 MiB, half of it ~2M interactions at 100 bytes each.
    assert choose_engine(s, 1_000_000, cluster) == "local"
    assert choose_engine(s, 3_000_000, cluster) == "blocked"
    assert choose_engine(s, 3_000_000, {**cluster, "spark.driver.memoryOverhead": "2g"}) == "local"
    assert choose_engine(s, 3_000_000, {**cluster, "spark.driver.memoryOverhead": "512"}) == "blocked"  # MiB
    assert choose_engine(s, 3_000_000, {**cluster, "spark.driver.memory": "16g"}) == "local"  # 1.6 GiB
    assert choose_engine(FactorSettings(engine="local"), 3_000_000, cluster) == "local"  # asked for


def test_mllib_engine_learns_the_same_structure(spark, interactions):
    settings = {**SMALL, **RECIPES["user-personalization"], "engine": "mllib"}
    model = recipe_for("user-personalization", settings).fit(TrainingSet.build(interactions))
    recs = recommend_users(model, history_entries(interactions, model), 5, factors=stored_factors(spark, model))
    assert group_share(recs) > 0.9


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_recipe_fits_a_model_that_survives_save_and_load(spark, interactions, tmp_path, name):
    recipe = REGISTRY[name]
    settings = {**SMALL, **RECIPES.get(name, {})}
    model = recipe_for(name, settings).fit(TrainingSet.build(interactions))
    assert type(model) is recipe.model and model.recipe == name
    store = VersionStore(str(tmp_path), ArrowFiles())  # pyarrow alone, as the real-time server reads
    store.save("s", model, {"recipe": name, "settings": settings})
    loaded = store.load_model(store.get("s"))
    assert type(loaded) is type(model) and loaded.recipe == name and list(loaded.item_ids) == list(model.item_ids)
    block = UserBlock.from_lists([[0, 3, 5], [1], []], timestamps=[[1, 2, 3], [4], []])
    np.testing.assert_allclose(loaded.score_users(block), model.score_users(block), rtol=1e-6)
    if recipe.scores_items:
        np.testing.assert_array_equal(loaded.score_items(np.array([0, 2])), model.score_items(np.array([0, 2])))
    assert (loaded.users is not None) == recipe.stores_users
    if recipe.stores_users:
        assert loaded.users.equals(model.users)


def test_trending_now_fits_the_growth_of_the_latest_window(spark, interactions):
    frame = interactions.toPandas()
    model = recipe_for("trending-now", {**SMALL, "window_days": 1.0, "smoothing": 2.0}).fit(
        TrainingSet.build(interactions))
    end, day = frame["TIMESTAMP"].max(), 86400
    latest = frame[frame["TIMESTAMP"] > end - day].groupby("ITEM_ID").size()
    previous = frame[(frame["TIMESTAMP"] <= end - day) & (frame["TIMESTAMP"] > end - 2 * day)].groupby("ITEM_ID").size()
    counts = lambda s: np.array([s.get(i, 0) for i in model.item_ids], dtype=float)  # noqa: E731
    expected = trend_scores(counts(latest), counts(previous), TrendingSettings(window_days=1.0, smoothing=2.0))
    np.testing.assert_allclose(model.scores, expected, rtol=1e-6)
    assert model.recipe == "trending-now" and (model.scores > 0).any() and (model.scores < -1).any()


def test_trending_ranks_growth_and_puts_quiet_items_last():
    s = TrendingSettings(smoothing=1.0, min_recent_interactions=2)
    scores = trend_scores(np.array([10.0, 10.0, 1.0, 0.0, 4.0]), np.array([1.0, 10.0, 0.0, 5.0, 0.0]), s)
    # growth 9/2, 4/1 and 0/11 for items 0, 4, 1; items 2 and 3 have under 2 recent events: last, by count.
    assert list(np.argsort(-scores, kind="stable")) == [0, 4, 1, 2, 3]
    assert scores[0] == pytest.approx(4.5) and scores[1] == 0 and scores[2] < -1


def test_als_block_solver_matches_the_normal_equations():
    rng = np.random.default_rng(1)
    rows, cols, k = 30, 25, 6
    y = rng.normal(size=(cols, k)).astype(np.float32)
    observed = rng.random((rows, cols)) < 0.3
    observed[0] = False  # a row without observations gets zeros
    conf = np.where(observed, 1 + 4 * rng.random((rows, cols)), 1.0)
    indptr = np.concatenate([[0], np.cumsum(observed.sum(1))])
    x = solve_block(indptr, np.flatnonzero(observed.ravel()) % cols, conf[observed].astype(np.float32),
                    np.zeros((rows, k), np.float32), y, gram(y, 0.3), steps=k + 4)
    assert np.allclose(x[0], 0)
    for u in range(1, rows):
        a = y.T @ np.diag(conf[u]) @ y + 0.3 * np.eye(k)
        assert np.allclose(x[u], np.linalg.solve(a, y.T @ (conf[u] * observed[u])), atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 700), st.integers(1, 30), st.integers(2, 100), st.floats(0, 1),
       st.integers(0, 2**32 - 1))
def test_top_k_equals_a_full_sort_with_ties_and_exclusions(rows, items, k, width, excluded, seed):
    rng = np.random.default_rng(seed)
    dtype = np.float32 if seed % 4 else np.float64  # float32 (the kernel's) sorts by a packed key, others not
    scores = rng.integers(-6, 6, size=(rows, items)).astype(dtype)  # many ties, negatives
    scores[(scores == 0) & (rng.random(scores.shape) < 0.5)] = -0.0  # equal to 0.0, as in a full sort
    scores[rng.random(scores.shape) < excluded] = -np.inf
    idx, vals = top_k(scores, k, width)
    expected = np.lexsort((np.broadcast_to(np.arange(items), scores.shape), -scores), axis=1)[:, :min(k, items)]
    assert (idx == expected).all()
    assert (vals == np.take_along_axis(scores, expected, axis=1)).all()


def test_user_block_keeps_the_most_recent_entries():
    block = UserBlock.from_lists([[1, 2, 3], [4]], timestamps=[[30, 10, 20], [5]])
    recent = block.recent(2)
    assert list(recent.indptr) == [0, 2, 3] and list(recent.items) == [1, 3, 4]


def test_metrics_match_the_services_worked_examples(spark):
    # NDCG@5, hits at ranks 2 and 5 of 2 relevant items: (1/log 3 + 1/log 6) / (1/log 2 + 1/log 3) = 0.6241.
    # MRR@25 over three users whose first hits are at 4, 2, 6: (1/4 + 1/2 + 1/6) / 3 = 0.3056.
    # precision@5: 2 hits in the top 5 = 0.4.
    recs = spark.createDataFrame([("u1", ["x", "r1", "y", "z", "r2"]), ("u2", ["x", "y", "z", "s1", "w", "v"]),
                                  ("u3", ["a", "s2", "b"]), ("u4", ["a", "b", "c", "d", "e", "t1"])],
                                 "USER_ID string, ITEMS array<string>")
    truth = spark.createDataFrame([("u1", ["r1", "r2"]), ("u2", ["s1"]), ("u3", ["s2", "q"]), ("u4", ["t1"])],
                                  "USER_ID string, TRUTH array<string>")
    m = ranking_metrics(recs.where("USER_ID = 'u1'"), truth.where("USER_ID = 'u1'"), (5,))
    assert m["ndcg_at_5"] == pytest.approx(0.6241, abs=1e-4)
    assert m["precision_at_5"] == pytest.approx(0.4)
    assert m["recall_at_5"] == pytest.approx(1.0)
    # MAP as the recommenders project defines it: u1 (1/2 + 2/5) / 2 = 0.45.
    assert m["map"] == pytest.approx(0.45)
    m = ranking_metrics(recs.where("USER_ID != 'u1'"), truth.where("USER_ID != 'u1'"), (25,))
    assert m["mrr"] == pytest.approx((1 / 4 + 1 / 2 + 1 / 6) / 3, abs=1e-4)


@pytest.mark.parametrize("where", ["spark", "arrow"])
def test_users_without_recommendations_count_as_zero_or_are_left_out(spark, where):
    recs = spark.createDataFrame([("u1", ["r1"]), ("u3", ["x"])], "USER_ID string, ITEMS array<string>")
    truth = spark.createDataFrame([("u1", ["r1"]), ("u2", ["s"])], "USER_ID string, TRUTH array<string>")
    if where == "arrow":
        recs, truth = recs.toArrow(), truth.toArrow()
    assert ranking_metrics(recs, truth, (1,), users="truth")["precision_at_1"] == pytest.approx(0.5)
    assert ranking_metrics(recs, truth, (1,), users="both")["precision_at_1"] == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["user-personalization", "sims"])
def test_the_evaluation_scores_the_same_on_the_driver_and_in_spark_tasks(interactions, name):
    recipe = recipe_for(name, {**SMALL, **RECIPES[name]})
    on_driver = evaluate_service(recipe, interactions, 40, on_driver=True)
    in_tasks = evaluate_service(recipe, interactions, 40, on_driver=False)
    assert on_driver == in_tasks and on_driver["test_users"] == 8


def test_sims_counts_the_same_on_the_driver_and_in_spark(interactions, monkeypatch):
    data = TrainingSet.build(interactions)
    # A short history cap and few neighbours, so the capping and the ties are exercised too.
    recipe = recipe_for("sims", {"max_history": 3, "similar_items": 4, "min_cointeraction_count": 1,
                                 "popularity_discount_factor": 0.3})
    local = recipe.fit(data).similarity
    monkeypatch.setattr(sims, "LOCAL_MAX_COOCCURRENCES", 0)  # counted on the driver only below this
    in_spark = recipe.fit(data).similarity
    assert local.nnz == in_spark.nnz > 0 and (local != in_spark).nnz == 0
    assert np.diff(local.indptr).max() == 4


def _driver_peak_bytes(work):
    """(work's result, how far this Python process's resident memory peaked above where it started), by
    resetting the kernel's high-water mark (Linux /proc/self/clear_refs)."""
    def status(field: str) -> int:
        return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(field))

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = status("VmRSS:")
    result = work()
    return result, status("VmHWM:") - start


@pytest.mark.parametrize("engine", ["blocked", "local"])
def test_the_blocked_engine_never_holds_the_user_factors_on_the_driver(spark, engine):
    users, factors = 100_000, 128  # their factors alone: 51 MB
    events = spark.range(3 * users).select(
        F.concat(F.lit("u"), (F.col("id") % users).cast("string")).alias("USER_ID"),
        F.concat(F.lit("i"), (F.abs(F.xxhash64("id")) % 1000).cast("string")).alias("ITEM_ID"),
        F.col("id").alias("TIMESTAMP"), F.lit(1.0).alias("WEIGHT"))
    data = TrainingSet.build(events)
    recipe = recipe_for("user-personalization", {**SMALL, "factors": factors, "iterations": 2, "engine": engine})
    model, peak = _driver_peak_bytes(lambda: recipe.fit(data))
    user_bytes = users * factors * 4
    if engine == "local":  # the measurement sees a driver that does hold them
        assert peak > user_bytes
    else:
        assert peak < user_bytes / 2, f"the driver's memory rose by {peak / 2**20:.0f} MiB"
        assert model.users.count() == users and model.item_factors.shape == (1000, factors)
