"""Solution versions end to end: train from the warehouse, manifest, reproducibility, bad input, CLI."""

from __future__ import annotations


import pytest

from datasets_helpers import SCHEMAS
from recipe_helpers import as_csv, planted
from recsys_spark.cli import main
from recsys_spark.config import load_config
from recsys_spark.datasets.importer import run_imports
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.errors import ConfigError, UserError
from recsys_spark.inference.scoring import history_entries, recommend_users
from recsys_spark.solutions.store import get_version, list_versions
from recsys_spark.solutions.train import evaluate_version, train_solution

SOLUTIONS = """
solutions:
  - name: for-you
    recipe: aws-user-personalization
    settings: {factors: 4, iterations: 8, regularization: 1.0, min_interactions: 500, min_users_with_two: 20}
    events: {types: {view: 1.0, buy: 3.0}}
  - name: similar
    recipe: sims
    settings: {min_cointeraction_count: 1, min_interactions: 500, min_users_with_two: 20}
  - name: too-picky
    recipe: popularity-count
    events: {types: {buy: 1.0}}
  - name: wrong-event
    recipe: popularity-count
    settings: {min_interactions: 10}
    events: {types: {view: 1.0, purchase: 2.0}}
"""


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """A warehouse with the planted interactions imported and one version of for-you and similar."""
    tmp = tmp_path_factory.mktemp("training")
    path = tmp / "pipeline.yaml"
    path.write_text(SCHEMAS.format(root=tmp / "warehouse") + SOLUTIONS)
    config = load_config(path)
    run_imports(spark, config, "interactions", as_csv(planted(), tmp / "interactions.csv"))
    snapshot = Warehouse(spark, config).version("interactions")
    return config, snapshot, {name: train_solution(spark, config, name) for name in ("for-you", "similar")}


def test_a_version_records_its_snapshot_settings_and_metrics(spark, trained):
    config, snapshot, versions = trained
    v = versions["for-you"]
    m = v.manifest
    assert m["recipe"] == "user-personalization" and m["datasets"] == {"interactions": snapshot}
    assert m["settings"]["factors"] == 4 and m["settings"]["alpha"] == 8.0  # defaults filled in
    assert m["events"]["types"] == {"view": 1.0, "buy": 3.0}
    assert m["counts"] == {"interactions": 960, "users": 80, "users_with_two": 80, "items": 40, "catalog": 40}
    assert m["training_seconds"] > 0 and m["tables"] == ["items", "users"]
    metrics = m["metrics"]
    assert set(metrics) >= {"coverage", "mean_reciprocal_rank_at_25", "normalized_discounted_cumulative_gain_at_5",
                            "normalized_discounted_cumulative_gain_at_10", "normalized_discounted_cumulative_gain_at_25",
                            "precision_at_5", "precision_at_10", "precision_at_25"}
    assert 0 < metrics["precision_at_5"] <= 1 and 0 < metrics["coverage"] <= 1
    assert [x.version for x in list_versions(spark, config, "for-you")] == [v.version]


def test_a_loaded_version_scores_without_the_training_data(spark, trained, tmp_path):
    config, _, versions = trained
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(versions["similar"].path, copy)  # the version alone, away from the warehouse
    from recsys_spark.core.store import ArrowFiles, SolutionVersion, VersionStore

    # Read with pyarrow alone, as the real-time server does, then scored by Spark.
    store = VersionStore(str(tmp_path), ArrowFiles())
    model = store.load_model(SolutionVersion("similar", "x", str(copy), versions["similar"].manifest))
    history = spark.createDataFrame([("new", "A1", 1, "view", 1.0), ("new", "A2", 2, "view", 1.0)],
                                    "USER_ID string, ITEM_ID string, TIMESTAMP long, EVENT_TYPE string, WEIGHT double")
    [row] = recommend_users(model, history_entries(history, model), 5).collect()
    assert sum(item.startswith("A") for item in row.ITEMS) >= 4 and not {"A1", "A2"} & set(row.ITEMS)


def test_retraining_the_same_snapshot_reproduces_the_metrics_after_new_imports(spark, trained, tmp_path):
    config, snapshot, versions = trained
    first = versions["for-you"]
    run_imports(spark, config, "interactions", as_csv(planted(seed=5), tmp_path / "more.csv"))  # a newer snapshot
    found, metrics = evaluate_version(spark, config, "for-you", first.version)
    assert found.manifest["datasets"] == {"interactions": snapshot}
    assert metrics == first.metrics
    second = train_solution(spark, config, "for-you")
    assert second.manifest["datasets"]["interactions"] > snapshot
    assert get_version(spark, config, "for-you").version == second.version


def test_too_little_data_and_unknown_event_types_fail_before_training(spark, trained):
    config, _, _ = trained
    with pytest.raises(UserError, match=r"interactions, at least 1,000 needed \(setting min_interactions\)"):
        train_solution(spark, config, "too-picky")
    with pytest.raises(UserError, match="event type.*purchase.*their event types: buy, view"):
        train_solution(spark, config, "wrong-event")
    assert not list_versions(spark, config, "too-picky") and not list_versions(spark, config, "wrong-event")


def test_a_solution_without_its_dataset_is_a_clear_error(spark, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(SCHEMAS.format(root=tmp_path / "empty") + SOLUTIONS)
    with pytest.raises(UserError, match="needs the interactions dataset, which has no table yet"):
        train_solution(spark, load_config(path), "similar")
    with pytest.raises(UserError, match="has no trained version yet"):
        get_version(spark, load_config(path), "similar")


def test_unknown_settings_and_recipes_are_config_errors(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(SCHEMAS.format(root=tmp_path / "w") + """
solutions:
  - {name: a, recipe: sims, settings: {popularity_discount: 0.5}}
  - {name: b, recipe: ease, settings: {regularization: -1}}
  - {name: c, recipe: hrnn}
""")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    text = str(e.value)
    assert "solutions[0].settings.popularity_discount: unknown setting for recipe sims (did you mean " \
           "'popularity_discount_factor'?); valid settings: " in text
    assert "solutions[1].settings.regularization: Input should be greater than 0" in text
    assert "unknown recipe 'hrnn'; known recipes: user-personalization (aws-user-personalization)" in text


def test_ease_refuses_a_catalog_too_large_before_any_work():
    from recsys_spark.core.models.ease import check_size
    from recsys_spark.core.settings import EaseSettings

    with pytest.raises(UserError, match=r"40,000 items, more than max_items = 30,000 \(the driver would need 35.8 GiB\)"):
        check_size(40_000, EaseSettings())


def test_cli_versions_and_evaluate(trained, capsys):
    config, _, versions = trained
    assert main(["versions", "--config", str(config.source)]) == 0
    out = capsys.readouterr().out
    assert versions["for-you"].version in out and versions["similar"].version in out and "NDCG@10" in out
    assert main(["evaluate", "--config", str(config.source), "--solution", "similar", "--protocol", "benchmark"]) == 0
    out = capsys.readouterr().out
    assert "benchmark protocol" in out and "ndcg_at_10" in out
    assert main(["evaluate", "--config", str(config.source), "--solution", "nope"]) == 2
    assert "no solution named 'nope'" in capsys.readouterr().err
