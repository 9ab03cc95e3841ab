"""Config loading: every kind of mistake gets its own message naming the file, line and key path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recsys_spark.config import load_config
from recsys_spark.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

VALID = """\
dataset_group:
  name: shop
  root: ./warehouse
  schemas:
    interactions:
      fields:
        - {name: USER_ID, type: string}
        - {name: ITEM_ID, type: string}
        - {name: TIMESTAMP, type: long}
        - {name: EVENT_TYPE, type: string}
        - {name: EVENT_VALUE, type: ["null", float]}
    items:
      fields:
        - {name: ITEM_ID, type: string}
        - {name: GENRES, type: [null, string], categorical: true}
        - {name: PRICE, type: double}
imports:
  - {dataset: interactions, source: data/interactions.csv}
  - {dataset: items, source: s3://bucket/items/, mode: INCREMENTAL}
solutions:
  - {name: top, recipe: aws-user-personalization, settings: {factors: 8}}
filters:
  - {name: cheap, expression: "INCLUDE ItemID WHERE Items.PRICE < $MAX"}
batch_jobs:
  - {name: mail, solution: top, input: all_users, output: out/mail, filter: cheap}
"""


def problems_of(write_config, text: str, name: str = "pipeline.yaml") -> str:
    with pytest.raises(ConfigError) as e:
        load_config(write_config(text, name))
    return str(e.value)


def test_valid_config_loads_with_defaults_and_resolved_paths(write_config):
    path = write_config(VALID)
    cfg = load_config(path)
    base = path.parent.resolve()
    assert cfg.root == str(base / "warehouse")
    assert cfg.imports[0].source == str(base / "data/interactions.csv")
    assert cfg.imports[0].mode == "FULL"
    assert cfg.imports[1].source == "s3://bucket/items/"  # URIs are kept as written
    assert cfg.solution("top").recipe == "user-personalization"  # the service's alias is accepted
    assert cfg.batch_job("mail").num_results == 25
    assert cfg.batch_job("mail").input == "all_users"
    assert cfg.cost.compare_per_1000_users_usd == 0.067
    assert cfg.schema("items").field("GENRES").nullable
    assert cfg.schema("users") is None
    assert cfg.source == path


def test_relative_paths_do_not_depend_on_the_working_directory(write_config, monkeypatch, tmp_path):
    path = write_config(VALID)
    monkeypatch.chdir("/")
    assert load_config(path).root == str(path.parent.resolve() / "warehouse")


@pytest.mark.parametrize("example", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_are_valid(example):
    assert load_config(example).dataset_group.schemas.interactions


@pytest.mark.parametrize("old,new,expected", [
    # unknown key, with a suggestion and the allowed keys
    ("settings: {factors: 8}", "setings: {factors: 8}",
     r"line 21, solutions\[0\]\.setings: unknown key \(did you mean 'settings'\?\); allowed keys: name, recipe"),
    # wrong type
    ("settings: {factors: 8}}", "settings: {factors: 8}}\ncost: {price_per_core_hour_usd: cheap}",
     r"line 22, cost\.price_per_core_hour_usd: Input should be a valid number, got 'cheap'"),
    # missing required key
    ("  root: ./warehouse\n", "",
     r"line 1, dataset_group\.root: required key is missing"),
    # unknown dataset
    ("{dataset: items, source", "{dataset: ratings, source",
     r"line 19, imports\[1\]\.dataset: Input should be 'interactions', 'users' or 'items', got 'ratings'"),
    # a dataset without a schema
    ("{dataset: items, source", "{dataset: users, source",
     r"line 19, imports\[1\]\.dataset: no schema for dataset 'users' under dataset_group\.schemas"),
    ("mode: INCREMENTAL", "mode: incremental",
     r"imports\[1\]\.mode: Input should be 'FULL' or 'INCREMENTAL', got 'incremental'"),
    ("recipe: aws-user-personalization", "recipe: deep-magic",
     r"line 21, solutions\[0\]\.recipe: unknown recipe 'deep-magic'; known recipes: user-personalization"),
    ("solution: top,", "solution: nope,",
     r"line 25, batch_jobs\[0\]\.solution: no solution named 'nope'; defined: top"),
    ("filter: cheap}", "filter: pricey}",
     r"batch_jobs\[0\]\.filter: no filter named 'pricey'; defined: cheap"),
    ("output: out/mail,", "output: out/mail, num_results: 501,",
     r"batch_jobs\[0\]\.num_results: Input should be less than or equal to 500, got 501"),
    ("output: out/mail,", "output: out/mail, num_results: 0,",
     r"batch_jobs\[0\]\.num_results: Input should be greater than or equal to 1, got 0"),
    ("name: shop", "name: my shop",
     r"line 2, dataset_group\.name: 'my shop' is not a valid name"),
    ("filters:\n", "filters:\n  - {name: cheap, expression: \"EXCLUDE ItemID WHERE Items.PRICE > 1\"}\n",
     r"filters\[1\]\.name: duplicate name 'cheap' in filters"),
    ("expression: \"INCLUDE ItemID WHERE Items.PRICE < $MAX\"", "expression: \"  \"",
     r"filters\[0\]\.expression: must not be empty"),
    ("settings: {factors: 8}", "settings: {factors: [8]}",
     r"line 21, solutions\[0\]\.settings: factors: expected a number, string, boolean or null, got list"),
])
def test_each_mistake_has_its_message(write_config, old, new, expected):
    assert old in VALID
    message = problems_of(write_config, VALID.replace(old, new, 1))
    assert re.search(expected, message), message
    assert message.startswith(str(write_config(VALID.replace(old, new, 1))))  # names the file


ET = "{name: EVENT_TYPE, type: string}"


@pytest.mark.parametrize("old,new,expected", [
    ("{name: TIMESTAMP, type: long}", "{name: TS, type: long}",
     r"interactions\.fields: the interactions schema must have a TIMESTAMP field of type long"),
    ("{name: TIMESTAMP, type: long}", "{name: TIMESTAMP, type: [\"null\", long]}",
     r"interactions\.fields\[2\]\.type: TIMESTAMP must be of type 'long' \(not nullable\), got \['null', 'long'\]"),
    ("{name: EVENT_VALUE, type: [\"null\", float]}", "{name: EVENT_VALUE, type: string}",
     r"reserved field EVENT_VALUE must be of type 'float' or \[\"null\", 'float'\], got 'string'"),
    (ET, "{name: EVENT_TYPE, type: string, categorical: true}", r"EVENT_TYPE cannot be categorical"),
    (ET, ET + "\n        - {name: NOTES, type: string, textual: true}",
     r"fields\[4\]\.textual: NOTES: only string fields of items can be textual"),
    (ET, "{name: EVENT_TYPE, type: map}", r"type 'map' is not supported \(flat records only\)"),
    (ET, "{name: EVENT_TYPE, type: [\"null\", string, int]}",
     r"type must be one of string, int, long, float, double, boolean or a nullable union"),
    (ET, ET + "\n        - {name: E_VENT_TYPE, type: string, categorical: true}",
     r"fields\[4\]\.name: field 'E_VENT_TYPE' collides with 'EVENT_TYPE'"),
    (ET, "{name: 9LIVES, type: string}", r"field name '9LIVES' must be letters, digits and _"),
    ("{name: USER_ID, type: string}", "{name: USER_ID, type: string, categorical: true}",
     r"USER_ID is an ID; it cannot be categorical or textual"),
    ("{name: USER_ID, type: string}", "{name: USER_ID, type: [null, string]}",
     r"USER_ID must be of type 'string' \(not nullable\)"),
])
def test_schema_rules_of_the_service(write_config, old, new, expected):
    assert old in VALID
    message = problems_of(write_config, VALID.replace(old, new, 1))
    assert re.search(r"dataset_group\.schemas\.interactions\." + r"\S*: " , message), message
    assert re.search(expected, message), message


def test_items_and_users_need_metadata_and_one_textual_field_at_most(write_config):
    text = VALID.replace("""        - {name: GENRES, type: [null, string], categorical: true}
        - {name: PRICE, type: double}
""", """        - {name: A, type: string, textual: true}
        - {name: B, type: string, textual: true}
        - {name: C, type: int, categorical: true}
    users:
      fields:
        - {name: USER_ID, type: string}
""")
    message = problems_of(write_config, text)
    assert "dataset_group.schemas.items.fields: at most one textual field is allowed" in message
    assert "dataset_group.schemas.items.fields[3].categorical: C: only string fields can be categorical" in message
    assert "dataset_group.schemas.users.fields: the users schema needs 1 to 25 metadata fields besides USER_ID, found 0" in message


def test_schema_file_errors_name_that_file_and_its_line(write_config, tmp_path):
    (tmp_path / "items.avsc").write_text("""{
  "type": "record", "name": "Items", "namespace": "com.amazonaws.personalize.schema",
  "fields": [
    {"name": "ITEM_ID", "type": "string"},
    {"name": "PRICE", "type": "double", "categorical": true}
  ], "version": "1.0"}
""")
    text = VALID.replace("""    items:
      fields:
        - {name: ITEM_ID, type: string}
        - {name: GENRES, type: [null, string], categorical: true}
        - {name: PRICE, type: double}
""", "    items: {file: items.avsc}\n")
    message = problems_of(write_config, text)
    assert f"{tmp_path / 'items.avsc'}, line 5, dataset_group.schemas.items.fields[1].categorical: " \
           "PRICE: only string fields can be categorical" in message


def test_schema_file_in_avro_json_loads(write_config, tmp_path):
    (tmp_path / "items.avsc").write_text('{"type": "record", "name": "Items", "fields": ['
                                         '{"name": "ITEM_ID", "type": "string"},'
                                         '{"name": "GENRES", "type": ["null", "string"], "categorical": true},'
                                         '{"name": "PRICE", "type": "double"}]}')
    text = VALID.replace("""    items:
      fields:
        - {name: ITEM_ID, type: string}
        - {name: GENRES, type: [null, string], categorical: true}
        - {name: PRICE, type: double}
""", "    items: {file: items.avsc}\n")
    assert load_config(write_config(text)).schema("items").names == ["ITEM_ID", "GENRES", "PRICE"]


def test_environment_variables_are_substituted_and_unset_ones_reported(write_config, monkeypatch):
    text = VALID.replace("root: ./warehouse", "root: s3://${BUCKET}/recs")
    monkeypatch.setenv("BUCKET", "prod-bucket")
    assert load_config(write_config(text)).root == "s3://prod-bucket/recs"
    monkeypatch.delenv("BUCKET")
    assert "line 3, dataset_group.root: environment variable BUCKET is not set" in problems_of(write_config, text)


def test_credentials_are_refused(write_config):
    text = VALID + "spark:\n  conf: {spark.hadoop.fs.s3a.secret.key: abc}\n"
    assert "credentials are never read from the config" in problems_of(write_config, text)
    text = VALID + "s3: {endpoint: 'http://127.0.0.1:9000', access_key: abc}\n"
    assert "s3.access_key: unknown key; allowed keys: endpoint, region, path_style_access" in \
        problems_of(write_config, text)


def test_duplicate_yaml_keys_are_errors(write_config):
    text = VALID + "cost: {price_per_core_hour_usd: 1}\ncost: {price_per_core_hour_usd: 2}\n"
    assert "line 27, cost: duplicate key (YAML would keep only the last)" in problems_of(write_config, text)


def test_yaml_syntax_error_names_line_and_column(write_config):
    message = problems_of(write_config, VALID.replace("  name: shop", "  name: [shop"))
    assert re.search(r"pipeline\.yaml, line \d+, column \d+: not valid YAML", message), message


def test_safe_loader_refuses_python_tags(write_config):
    message = problems_of(write_config, VALID.replace("name: shop", "name: !!python/object/apply:os.system [id]"))
    assert "not valid YAML" in message and "python/object" in message


def test_not_a_mapping_and_missing_file(write_config, tmp_path):
    assert "must be a YAML mapping" in problems_of(write_config, "- a\n- b\n")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_every_problem_is_reported_at_once(write_config):
    text = VALID.replace("recipe: aws-user-personalization", "recipe: x").replace("num_results", "n") \
        .replace("name: shop", "name: 'a b'")
    message = problems_of(write_config, text)
    assert message.splitlines()[0].endswith("2 problems in the config:")


def test_untrained_string_fields_are_warned_about(write_config):
    cfg = load_config(write_config(VALID.replace("{name: PRICE, type: double}",
                                                 "{name: PRICE, type: double}\n        - {name: COLOR, type: string}")))
    assert cfg.warnings == ["dataset_group.schemas.items: string field COLOR is neither categorical nor textual; "
                            "recipes and filters will not use it"]
