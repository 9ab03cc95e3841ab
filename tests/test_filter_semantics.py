"""Filter semantics on a small hand-made dataset whose right answers are known by hand, through the path
the batch job takes: plans compiled by the core against the catalog and the items table, per-user lists
computed in Spark tasks, applied to a score block by the core."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datasets_helpers import write
from recsys_spark.config import Filter as NamedFilter
from recsys_spark.config import load_config
from recsys_spark.core.filters import RowFilters, apply_filter, bind, check_filter, parse_filter
from recsys_spark.core.filters.plan import select_users
from recsys_spark.datasets.importer import run_imports
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.inference.filters import compile_plans, plan_user_lists

CONFIG = """
dataset_group:
  name: films
  root: {root}
  schemas:
    interactions:
      fields:
        - {{name: USER_ID, type: string}}
        - {{name: ITEM_ID, type: string}}
        - {{name: TIMESTAMP, type: long}}
        - {{name: EVENT_TYPE, type: string}}
    users:
      fields:
        - {{name: USER_ID, type: string}}
        - {{name: AGE, type: ["null", int]}}
    items:
      fields:
        - {{name: ITEM_ID, type: string}}
        - {{name: GENRES, type: ["null", string], categorical: true}}
        - {{name: PRICE, type: ["null", double]}}
"""
ITEMS = ['i1,comedy|drama,5', 'i2,drama,15', 'i3,horror,25', 'i4,,8', 'i5,"x\\") OR 1=1 --",30']
CATALOG = ["i1", "i2", "i3", "i4", "i5"]
USERS = ["u1", "u2", "u3"]


@pytest.fixture(scope="module")
def warehouse(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("films")
    config_path = root / "films.yaml"
    config_path.write_text(CONFIG.format(root=root / "warehouse"))
    config = load_config(config_path)
    run_imports(spark, config, "items", write(root / "items.csv", "ITEM_ID,GENRES,PRICE\n" + "\n".join(ITEMS) + "\n"))
    run_imports(spark, config, "users", write(root / "users.csv", "USER_ID,AGE\nu1,30\nu2,15\nu3,50\n"))
    run_imports(spark, config, "interactions", write(root / "events.csv", "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n"
                                                     "u1,i1,1,view\nu1,i2,2,View\nu1,i3,3,purchase\n"
                                                     "u2,i1,1,view\nu2,i2,2,view\nu2,i4,3,view\n"))
    return Warehouse(spark, config)


def config_with(warehouse, text, recent=100):
    """The warehouse's config with filter ``f`` = ``text`` (checked as `validate` does)."""
    check_filter(parse_filter(text), warehouse.config.schema, text)
    named = NamedFilter(name="f", expression=text, recent_per_event_type=recent)
    return warehouse.config.model_copy(update={"filters": [named]})


def evaluate(warehouse, text, bindings, users=(), queries=(), recent=100):
    """Allowed items per user (or per related-items query item) with the filter bound to each of
    ``bindings``: compiled, listed and applied exactly as the batch job does."""
    wh = Warehouse(warehouse.spark, config_with(warehouse, text, recent))
    catalog = np.array(CATALOG, dtype=object)
    plans = compile_plans(wh, "f", [json.dumps(b, sort_keys=True) if b else None for b in bindings], catalog)
    lists = plan_user_lists(wh, "f", plans)
    per_user = {(r.USER_ID, r.BINDING_ID): r for r in lists.collect()} if lists is not None else {}
    index = {item: i for i, item in enumerate(CATALOG)}
    out = []
    for b in range(len(bindings)):
        keys = [("user", u) for u in users] + [("item", q) for q in queries]
        rows = [per_user.get((k, b)) if kind == "user" else None for kind, k in keys]

        def pairs(column):
            found = [(i, index[item]) for i, r in enumerate(rows) if r is not None for item in (r[column] or [])]
            return np.array([p[0] for p in found], np.int64), np.array([p[1] for p in found], np.int64)

        filters = RowFilters(np.full(len(keys), b), np.ones(len(keys), bool),
                             np.array([kind == "item" for kind, _ in keys]), np.array([k for _, k in keys], object),
                             pairs("include"), pairs("exclude"),
                             [frozenset(r.applies or ()) if r is not None else frozenset() for r in rows])
        scores = np.ones((len(keys), len(CATALOG)), dtype=np.float32)
        apply_filter(plans, scores, filters)
        out.append({k: {CATALOG[j] for j in np.flatnonzero(np.isfinite(scores[i]))} for i, (_, k) in enumerate(keys)})
    return out, plans


def allowed(warehouse, text, values=None, recent=100):
    return evaluate(warehouse, text, [values], users=USERS, recent=recent)[0][0]


def same_for_all(result):
    assert len({frozenset(v) for v in result.values()}) == 1, result
    return next(iter(result.values()))


@pytest.mark.parametrize("text,expected", [
    ('INCLUDE ItemID WHERE Items.GENRES IN ("drama")', {"i1", "i2"}),  # any of the |-separated values
    ('INCLUDE ItemID WHERE Items.GENRES IN ("comedy", "horror")', {"i1", "i3"}),
    ('INCLUDE ItemID WHERE Items.GENRES NOT IN ("drama")', {"i3", "i4", "i5"}),  # a missing value is not in
    ('EXCLUDE ItemID WHERE Items.GENRES IN ("drama")', {"i3", "i4", "i5"}),
    ('INCLUDE ItemID WHERE Items.PRICE < 8', {"i1"}),
    ('INCLUDE ItemID WHERE Items.PRICE <= 8', {"i1", "i4"}),
    ('INCLUDE ItemID WHERE Items.PRICE = 15', {"i2"}),
    ('INCLUDE ItemID WHERE Items.PRICE > 15', {"i3", "i5"}),
    ('INCLUDE ItemID WHERE Items.PRICE >= 15', {"i2", "i3", "i5"}),
    ('INCLUDE ItemID WHERE Items.PRICE IN (5, 25)', {"i1", "i3"}),
    ('INCLUDE ItemID WHERE Items.GENRES IN ("horror") OR Items.PRICE < 6', {"i1", "i3"}),
    ('INCLUDE ItemID WHERE Items.GENRES IN ("drama") AND Items.PRICE > 6', {"i2"}),
    ('INCLUDE ItemID WHERE Items.GENRES IN ("drama") | INCLUDE ItemID WHERE Items.PRICE > 20', {"i1", "i2", "i3", "i5"}),
    ('INCLUDE ItemID WHERE Items.PRICE < 20 | EXCLUDE ItemID WHERE Items.GENRES IN ("comedy")', {"i2", "i4"}),
])
def test_item_conditions(warehouse, text, expected):
    assert same_for_all(allowed(warehouse, text)) == expected


def test_interaction_conditions_per_user_and_case_insensitive_event_types(warehouse):
    assert allowed(warehouse, 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("view")') == \
        {"u1": {"i3", "i4", "i5"}, "u2": {"i3", "i5"}, "u3": set(CATALOG)}
    assert allowed(warehouse, 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")') == \
        {"u1": {"i3"}, "u2": set(), "u3": set()}  # an INCLUDE with nothing for the user allows nothing
    assert allowed(warehouse, 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")') == \
        {"u1": {"i4", "i5"}, "u2": {"i3", "i5"}, "u3": set(CATALOG)}
    assert allowed(warehouse, 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE NOT IN ("view")') == \
        {"u1": {"i1", "i2", "i4", "i5"}, "u2": set(CATALOG), "u3": set(CATALOG)}


def test_include_minus_exclude_across_datasets(warehouse):
    text = 'INCLUDE ItemID WHERE Items.GENRES IN ("drama") | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("view")'
    assert allowed(warehouse, text) == {"u1": set(), "u2": set(), "u3": {"i1", "i2"}}


def test_recency_cap_per_event_type(warehouse):
    text = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("view")'
    # u2's two most recent views are i4 and i2; u1's views i2 (newest) and i1 both count; purchase separately.
    assert allowed(warehouse, text, recent=2)["u2"] == {"i1", "i3", "i5"}
    assert allowed(warehouse, text, recent=1) == {"u1": {"i1", "i3", "i4", "i5"}, "u2": {"i1", "i2", "i3", "i5"},
                                                  "u3": set(CATALOG)}


def test_missing_parameters(warehouse):
    text = 'INCLUDE ItemID WHERE Items.PRICE < $MAX | EXCLUDE ItemID WHERE Items.GENRES IN ($NOT_GENRE)'
    assert same_for_all(allowed(warehouse, text, {"MAX": "20"})) == {"i1", "i2", "i4"}  # EXCLUDE skipped
    assert same_for_all(allowed(warehouse, text, {"MAX": "20", "NOT_GENRE": '"drama"'})) == {"i4"}


def test_current_user_conditions_decide_per_user(warehouse):
    text = 'EXCLUDE ItemID WHERE Items.GENRES IN ("horror") IF CurrentUser.AGE < $ADULT'
    result = allowed(warehouse, text, {"ADULT": "18"})
    assert result == {"u1": set(CATALOG), "u2": set(CATALOG) - {"i3"}, "u3": set(CATALOG)}
    text = 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("view") IF CurrentUser.AGE > 20'
    assert allowed(warehouse, text) == {"u1": {"i1", "i2"}, "u2": set(CATALOG), "u3": set()}


def test_values_with_quotes_and_sql_match_only_themselves(warehouse):
    text = 'INCLUDE ItemID WHERE Items.GENRES IN ($G)'
    assert same_for_all(allowed(warehouse, text, {"G": '"x\\") OR 1=1 --"'})) == {"i5"}
    assert same_for_all(allowed(warehouse, text, {"G": "\"' OR '1'='1\",\"drama'--\""})) == set()
    assert same_for_all(allowed(warehouse, text, {"G": '"drama) OR (1=1"'})) == set()


def test_each_distinct_binding_is_compiled_once(warehouse):
    text = 'INCLUDE ItemID WHERE Items.PRICE < $MAX | EXCLUDE ItemID WHERE Items.GENRES IN ($G)'
    results, plans = evaluate(warehouse, text, [{"MAX": "20"}, {"MAX": " 20 "}, {"MAX": '"20"'},
                                                {"MAX": "20", "G": '"horror"'}, {"G": '"horror"'}], users=["u1"])
    assert plans[1] is plans[0] and plans[2] is plans[0] and plans[3] is not plans[0]
    assert [r["u1"] for r in results[:4]] == [{"i1", "i2", "i4"}] * 4
    assert plans[4].error == "filter f: filterValues: $MAX needed by `INCLUDE ItemID WHERE Items.PRICE < $MAX`"


def test_current_item_conditions_for_related_items_queries(warehouse):
    text = 'INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE AND Items.GENRES IN CurrentItem.GENRES'
    # i2 (drama, 15): cheaper items sharing a genre -> i1 (comedy|drama, 5); i3 (horror): none; i4 (no genre):
    # none; an item the items table does not have: none
    [result], _ = evaluate(warehouse, text, [None], queries=["i2", "i3", "i4", "nope"])
    assert result == {"i2": {"i1"}, "i3": set(), "i4": set(), "nope": set()}
    mixed = 'EXCLUDE ItemID WHERE Items.GENRES IN CurrentItem.GENRES | EXCLUDE ItemID WHERE Items.PRICE > 20'
    [result], _ = evaluate(warehouse, mixed, [None], users=["u3"], queries=["i2"])
    assert result["i2"] == {"i4"}  # drama items out, then the expensive ones
    assert result["u3"] == {"i1", "i2", "i4"}  # a user row: the item rule only
    _, [plan] = evaluate(warehouse, 'INCLUDE ItemID WHERE Items.GENRES IN CurrentItem.GENRES IF CurrentUser.AGE > 1',
                         [None], users=["u1"])
    assert "CurrentItem conditions apply to related-items queries" in plan.error


@pytest.mark.parametrize("text,expected", [
    ('INCLUDE UserID WHERE Users.AGE < $AGE', {"u2"}),
    ('EXCLUDE UserID WHERE Users.AGE < $AGE', {"u1", "u3"}),
    ('INCLUDE UserID WHERE Interactions.EVENT_TYPE IN ("purchase", "rating")', {"u1"}),
    ('INCLUDE UserID WHERE Interactions.EVENT_TYPE IN ("view") | EXCLUDE UserID WHERE Users.AGE > 20', {"u2"}),
])
def test_user_segment_filters(warehouse, text, expected):
    parsed = parse_filter(text)
    check_filter(parsed, warehouse.config.schema, text)
    users, events = warehouse.read("users").toArrow(), warehouse.read("interactions").toArrow()
    assert select_users(bind(parsed, {"AGE": "18"}), users, events, warehouse.config.schema) == expected


def test_named_filter_uses_its_recency_setting(warehouse):
    text = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("view")'
    assert allowed(warehouse, text, recent=1)["u2"] == {"i1", "i2", "i3", "i5"}
    assert allowed(warehouse, text)["u2"] == {"i3", "i5"}
