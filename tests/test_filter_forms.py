"""The service's documented filter forms, written as its docs and sample notebooks write them (dataset and
field names in any case), each checked as the config does and applied through the batch job's path
(compile_plans, plan_user_lists, apply_filter) to a small dataset whose answers are worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datasets_helpers import write
from recsys_spark.config import Filter as NamedFilter
from recsys_spark.config import load_config
from recsys_spark.core.filters import RowFilters, apply_filter, bind
from recsys_spark.core.filters.plan import select_users
from recsys_spark.datasets.importer import run_imports
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.inference.filters import compile_plans, plan_user_lists

CONFIG = """
dataset_group:
  name: shop
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
        - {{name: AGE, type: int}}
        - {{name: MEMBERSHIP_STATUS, type: ["null", string], categorical: true}}
    items:
      fields:
        - {{name: ITEM_ID, type: string}}
        - {{name: GENRE, type: ["null", string], categorical: true}}
        - {{name: CATEGORY_L1, type: string, categorical: true}}
        - {{name: CATEGORY_L2, type: string, categorical: true}}
        - {{name: PRICE, type: double}}
        - {{name: CREATION_TIMESTAMP, type: long}}
"""
ITEMS = """ITEM_ID,GENRE,CATEGORY_L1,CATEGORY_L2,PRICE,CREATION_TIMESTAMP
i1,comedy|drama,shoe,boot,50,100
i2,drama,shoe,sandal,20,200
i3,horror,watch,luxury,500,300
i4,comedy,clothing,shirt,15,400
i5,,watch,sport,80,500
"""
USERS = """USER_ID,AGE,MEMBERSHIP_STATUS
u1,30,gold
u2,15,silver
u3,50,
"""
# Event types in mixed case: filters compare them without regard to case.
EVENTS = """USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE
u1,i1,1,click
u1,i2,2,Stream
u1,i3,3,purchase
u2,i4,1,CLICK
u2,i1,2,favorite
"""
CATALOG = ["i1", "i2", "i3", "i4", "i5"]
ALL = set(CATALOG)


@pytest.fixture(scope="module")
def warehouse(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("shop")
    config_path = root / "shop.yaml"
    config_path.write_text(CONFIG.format(root=root / "warehouse"))
    config = load_config(config_path)
    for dataset, text in (("items", ITEMS), ("users", USERS), ("interactions", EVENTS)):
        run_imports(spark, config, dataset, write(root / f"{dataset}.csv", text))
    return Warehouse(spark, config)


def allowed(warehouse, text, values=None, users=("u1", "u2", "u3"), queries=()):
    """Allowed items per user and per related-items query item, the filter checked as the config does and
    compiled, listed and applied as the batch job does."""
    warehouse.config.checked_filter(text)
    config = warehouse.config.model_copy(update={"filters": [NamedFilter(name="f", expression=text)]})
    wh = Warehouse(warehouse.spark, config)
    plans = compile_plans(wh, "f", [json.dumps(values) if values else None], np.array(CATALOG, dtype=object))
    assert plans[0].error is None, plans[0].error
    lists = plan_user_lists(wh, "f", plans)
    per_user = {r.USER_ID: r for r in lists.collect()} if lists is not None else {}
    keys = list(users) + list(queries)
    rows = [per_user.get(k) if k in users else None for k in keys]

    def pairs(column):
        found = [(i, CATALOG.index(item)) for i, r in enumerate(rows) if r is not None for item in r[column] or []]
        return np.array([i for i, _ in found], np.int64), np.array([j for _, j in found], np.int64)

    related = np.array([k not in users for k in keys])
    filters = RowFilters(np.zeros(len(keys), np.int64), np.ones(len(keys), bool), related,
                         np.array(keys, dtype=object), pairs("include"), pairs("exclude"),
                         [frozenset(r.applies or ()) if r is not None else frozenset() for r in rows])
    scores = np.ones((len(keys), len(CATALOG)), dtype=np.float32)
    apply_filter(plans, scores, filters)
    return {k: {CATALOG[j] for j in np.flatnonzero(np.isfinite(scores[i]))} for i, k in enumerate(keys)}


def for_everyone(items):
    return {"u1": items, "u2": items, "u3": items}


@pytest.mark.parametrize("text,values,expected", [
    # items
    ('EXCLUDE ItemID WHERE Items.genre IN ($GENRE)', {"GENRE": '"comedy","horror"'}, {"i2", "i5"}),
    ('EXCLUDE ItemID WHERE ITEMS.CATEGORY_L1 IN ("shoe") AND Items.CATEGORY_L2 NOT IN ("boot")', None,
     {"i1", "i3", "i4", "i5"}),
    ('INCLUDE ItemID WHERE Items.PRICE <= $PRICE', {"PRICE": "50"}, {"i1", "i2", "i4"}),
    ('INCLUDE ItemID WHERE Items.PRICE <= $PRICE', {"PRICE": '"50"'}, {"i1", "i2", "i4"}),
    ('INCLUDE ItemID WHERE Items.CREATION_TIMESTAMP < $DATE', {"DATE": "300"}, {"i1", "i2"}),
    ('INCLUDE ItemID WHERE Items.PRICE > ($PRICE)', {"PRICE": '"80"'}, {"i3"}),
    ('INCLUDE ItemID WHERE Items.PRICE IN ($PRICE)', {"PRICE": '"15","500"'}, {"i3", "i4"}),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("Comedy")', None, set()),  # values other than event types: exact
    ('include itemid where items.category_l1 in ("watch") or items.Price < 16', None, {"i3", "i4", "i5"}),
])
def test_item_forms(warehouse, text, values, expected):
    assert allowed(warehouse, text, values) == for_everyone(expected)


@pytest.mark.parametrize("text,values,expected", [
    ('EXCLUDE ItemID WHERE Interactions.event_type IN ("click", "stream")', None,
     {"u1": {"i3", "i4", "i5"}, "u2": {"i1", "i2", "i3", "i5"}, "u3": ALL}),
    ('INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("favorite")', None, {"u1": set(), "u2": {"i1"}, "u3": set()}),
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($EVENT_TYPE)', {"EVENT_TYPE": '"PURCHASE"'},
     {"u1": ALL - {"i3"}, "u2": ALL, "u3": ALL}),
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($EVENT_TYPE)', None, for_everyone(ALL)),  # skipped
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")', None,
     {"u1": {"i4", "i5"}, "u2": {"i2", "i3", "i5"}, "u3": ALL}),
])
def test_interaction_forms(warehouse, text, values, expected):
    assert allowed(warehouse, text, values) == expected


@pytest.mark.parametrize("text,values,expected", [
    ('INCLUDE ItemID WHERE Items.CATEGORY_L1 IN ($CATEGORY) | INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN '
     '("favorite")', {"CATEGORY": '"watch"'}, {"u1": {"i3", "i5"}, "u2": {"i1", "i3", "i5"}, "u3": {"i3", "i5"}}),
    ('INCLUDE ItemID WHERE Items.GENRE IN ($GENRE) | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", '
     '"stream")', {"GENRE": '"drama"'}, {"u1": set(), "u2": {"i1", "i2"}, "u3": {"i1", "i2"}}),
])
def test_chained_forms(warehouse, text, values, expected):
    assert allowed(warehouse, text, values) == expected


@pytest.mark.parametrize("text,values,expected", [
    ('EXCLUDE ItemID WHERE Items.GENRE IN ($GENRE) IF CurrentUser.AGE = $AGE', {"GENRE": '"horror"', "AGE": "15"},
     {"u1": ALL, "u2": ALL - {"i3"}, "u3": ALL}),
    ('INCLUDE ItemID WHERE Items.CATEGORY_L1 IN ("watch") AND Items.CATEGORY_L2 IN ("luxury") '
     'IF CurrentUser.AGE > 18', None, {"u1": {"i3"}, "u2": ALL, "u3": {"i3"}}),
    ('EXCLUDE ItemID WHERE Items.PRICE > 100 IF currentuser.membership_status IN ("silver")', None,
     {"u1": ALL, "u2": ALL - {"i3"}, "u3": ALL}),
])
def test_current_user_forms(warehouse, text, values, expected):
    assert allowed(warehouse, text, values) == expected


@pytest.mark.parametrize("text,values,expected", [
    # i1 (comedy|drama, 50): cheaper and sharing a genre, i2 and i4; i3 (the only horror): none; i5 (no genre): none
    ('INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE AND Items.GENRE IN CurrentItem.GENRE', None,
     {"i1": {"i2", "i4"}, "i3": set(), "i5": set()}),
    ('INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE AND Items.CREATION_TIMESTAMP > $DATE', {"DATE": "150"},
     {"i1": {"i2", "i4"}, "i3": {"i2", "i4", "i5"}, "i5": {"i2", "i4"}}),
    ('include itemid where items.category_l1 in currentitem.Category_L1', None,
     {"i1": {"i1", "i2"}, "i3": {"i3", "i5"}, "i5": {"i3", "i5"}}),
])
def test_current_item_forms(warehouse, text, values, expected):
    assert allowed(warehouse, text, values, users=(), queries=("i1", "i3", "i5")) == expected


@pytest.mark.parametrize("text,values,expected", [
    ('INCLUDE UserID WHERE Users.MEMBERSHIP_STATUS IN ($MEMBERSHIP)', {"MEMBERSHIP": '"gold"'}, {"u1"}),
    ('EXCLUDE UserID WHERE Users.AGE < $AGE', {"AGE": '"18"'}, {"u1", "u3"}),
    ('INCLUDE UserID WHERE Interactions.EVENT_TYPE IN ("click", "rating")', None, {"u1", "u2"}),
    ('EXCLUDE UserID WHERE interactions.event_type IN ($EVENT_TYPE)', {"EVENT_TYPE": '"favorite"'}, {"u1", "u3"}),
])
def test_user_segment_forms(warehouse, text, values, expected):
    checked = warehouse.config.checked_filter(text)
    users, events = warehouse.read("users").toArrow(), warehouse.read("interactions").toArrow()
    assert select_users(bind(checked, values), users, events, warehouse.config.schema) == expected
