"""The filter language: the service's documented examples, malformed expressions with their positions,
schema rules, filter values and binding, config-time checking, and a property-based round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_spark.config import load_config
from recsys_spark.errors import ConfigError, UserError
from recsys_spark.core.filters import FilterError, bind, check_filter, parse_filter, parse_filter_values
from recsys_spark.core.filters.syntax import (Condition, CurrentItem, Expression, Filter, Number, Param, StringList,
                                         quote)
from recsys_spark.schema import DatasetSchema

REPO = Path(__file__).resolve().parent.parent


def schema(*fields) -> DatasetSchema:
    return DatasetSchema.model_validate({"fields": [dict(zip(("name", "type", "categorical", "textual"), f))
                                                    for f in fields]})


SCHEMAS = {
    "interactions": schema(("USER_ID", "string"), ("ITEM_ID", "string"), ("TIMESTAMP", "long"),
                           ("EVENT_TYPE", "string")),
    "items": schema(("ITEM_ID", "string"), ("CATEGORY", ["null", "string"], True),
                    ("CATEGORY_L1", "string", True), ("CATEGORY_L2", "string", True), ("GENRE", "string", True),
                    ("DESCRIPTION", "string", True), ("PRICE", "double"), ("CREATION_TIMESTAMP", "long"),
                    ("AVAILABLE", "string", True), ("NOTES", "string", False, True), ("ON_SALE", "boolean")),
    "users": schema(("USER_ID", "string"), ("MEMBERSHIP_STATUS", "string", True), ("AGE", "int")),
}

# The managed service's documented examples for items and user segments.
EXAMPLES = [
    'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($EVENT_TYPE)',
    'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")',
    'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")',
    'EXCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORY)',
    'EXCLUDE ItemID WHERE Items.CATEGORY IN ("shoe") AND Items.DESCRIPTION NOT IN ("boot")',
    'EXCLUDE ItemID WHERE Items.CATEGORY_L1 IN ("shoe") AND Items.CATEGORY_L2 NOT IN ("boot")',
    'INCLUDE ItemID WHERE Items.PRICE <= $PRICE',
    'INCLUDE ItemID WHERE Items.CREATION_TIMESTAMP < $DATE',
    'INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)',
    'INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE AND Items.GENRE IN CurrentItem.GENRE',
    'INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE AND Items.CREATION_TIMESTAMP > $DATE',
    'EXCLUDE ItemID WHERE Items.GENRE IN ($GENRE) IF CurrentUser.AGE = $AGE',
    'INCLUDE ItemID WHERE Items.CATEGORY IN ("watch") AND Items.DESCRIPTION IN ("luxury") IF CurrentUser.AGE > 18',
    'INCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORY) | INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("favorite")',
    'INCLUDE ItemID WHERE Items.GENRE IN ($GENRE) | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")',
    'INCLUDE ItemID WHERE Items.CATEGORY IN ("clothing") AND Items.AVAILABLE IN ("True")',
    'INCLUDE UserID WHERE Users.MEMBERSHIP_STATUS IN ($MEMBERSHIP)',
    'EXCLUDE UserID WHERE Users.AGE < $AGE',
    'INCLUDE UserID WHERE Interactions.EVENT_TYPE IN ("click", "rating")',
    'EXCLUDE UserID WHERE Interactions.EVENT_TYPE IN ($EVENT_TYPE)',
    'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")',
    'INCLUDE ItemID WHERE Items.PRICE > ($PRICE)',
    'INCLUDE ItemID WHERE Items.GENRE IN ("a") OR Items.PRICE < 5 AND Items.CATEGORY NOT IN ("b")',
]


@pytest.mark.parametrize("text", EXAMPLES)
def test_documented_examples_parse_check_and_normalize(text):
    parsed = parse_filter(text)
    check_filter(parsed, SCHEMAS.get, text)
    normalized = str(parsed)
    assert parse_filter(normalized) == parsed
    assert str(parse_filter(normalized)) == normalized


def test_keywords_are_case_insensitive_and_normalized():
    parsed = parse_filter('include itemid where items.GENRE not in ("a") and ITEMS.PRICE >= 2.5 '
                          'if currentuser.AGE < $A')
    assert str(parsed) == 'INCLUDE ItemID WHERE Items.GENRE NOT IN ("a") AND Items.PRICE >= 2.5 IF CurrentUser.AGE < $A'
    assert parsed.parameters == {"A"}


def test_and_binds_tighter_than_or():
    parsed = parse_filter('INCLUDE ItemID WHERE Items.GENRE IN ("a") OR Items.PRICE < 5 AND Items.CATEGORY IN ("b")')
    [expression] = parsed.expressions
    assert [[c.field for c in group] for group in expression.any_of] == [["GENRE"], ["PRICE", "CATEGORY"]]


@pytest.mark.parametrize("text,message,position", [
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a", "b"', 'expected "," or ")", found the end of the expression', 45),
    ('INCLUDE ItemID WHERE Items.GENRE IN "a", "b")', 'expected a list in parentheses', 36),
    ('INCLUDE ItemID Items.GENRE IN ("a")', "expected WHERE, found 'Items.GENRE'", 15),
    ('INCLUDE ItemID WHERE Items.PRICE != 5', "unknown operator '!='", 33),
    ('INCLUDE ItemID WHERE Items.GENRE LIKE ("a")', "expected an operator: IN, NOT IN, =, <, <=, > or >=, found 'LIKE'", 33),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a") |', "expected INCLUDE or EXCLUDE, found the end of the expression", 43),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a)', 'unterminated string: a closing " is missing', 37),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a") AND', "expected a field such as Items.GENRE", 45),
    ('KEEP ItemID WHERE Items.GENRE IN ("a")', "expected INCLUDE or EXCLUDE, found 'KEEP'", 0),
    ('INCLUDE Items WHERE Items.GENRE IN ("a")', "expected ItemID or UserID, found 'Items'", 8),
    ('INCLUDE ItemID WHERE Products.GENRE IN ("a")', "unknown dataset 'Products'", 21),
    ('INCLUDE ItemID WHERE Items.GENRE NOT ("a")', "expected IN after NOT", 37),
    ('INCLUDE ItemID WHERE Items.PRICE < $', "a parameter is $ followed by letters", 35),
    ('INCLUDE ItemID WHERE Items.PRICE < "5"', "expected a number, $PARAM or CurrentItem.FIELD", 35),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a") extra', "expected AND, OR, IF, | or the end", 42),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a") IF Users.AGE > 3', "expected CurrentUser.FIELD, found 'Users.AGE'", 45),
    ('   ', "the filter expression is empty", 0),
])
def test_malformed_expressions_name_the_problem_and_position(text, message, position):
    with pytest.raises(FilterError) as e:
        parse_filter(text)
    assert message in e.value.message and e.value.position == position, (e.value.message, e.value.position)
    assert str(e.value).endswith(f"\n  {text}\n  {' ' * position}^")


@pytest.mark.parametrize("text,message", [
    ('INCLUDE ItemID WHERE Items.GENRE < 5', "< compares numbers, and Items.GENRE is a string; use IN or NOT IN"),
    ('INCLUDE ItemID WHERE Items.NOTES IN ("x")', "Items.NOTES is a textual field"),
    ('INCLUDE ItemID WHERE Items.ON_SALE IN ("true")', "Items.ON_SALE is boolean"),
    ('INCLUDE ItemID WHERE Items.COLOR IN ("red")', "Items has no field COLOR; its fields: ITEM_ID, CATEGORY"),
    ('INCLUDE ItemID WHERE Items.PRICE IN ("cheap")', "Items.PRICE is numeric; 'cheap' is not a number"),
    ('INCLUDE ItemID WHERE Users.AGE > 3', "ItemID filters can use Items and Interactions conditions, not Users"),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a") AND Interactions.EVENT_TYPE IN ("b")',
     "one expression filters on one dataset (Items here); chain Interactions conditions"),
    ('EXCLUDE ItemID WHERE Interactions.DEVICE IN ("ios")', "can only use Interactions.EVENT_TYPE"),
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE = 3', "takes IN or NOT IN"),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("*")', '"*" (any event type) is only for Interactions.EVENT_TYPE'),
    ('INCLUDE UserID WHERE Users.AGE < CurrentItem.PRICE', "CurrentItem is only available to ItemID filters"),
    ('INCLUDE ItemID WHERE Items.GENRE IN CurrentItem.PRICE', "are not both numeric or both strings"),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a") IF CurrentUser.HEIGHT > 3', "Users has no field HEIGHT"),
    ('INCLUDE UserID WHERE Users.AGE > 3 IF CurrentUser.AGE > 3', "only available to ItemID filters"),
])
def test_schema_rules(text, message):
    with pytest.raises(FilterError) as e:
        check_filter(parse_filter(text), SCHEMAS.get, text)
    assert message in e.value.message, e.value.message


@pytest.mark.parametrize("text,values", [
    ('"comedy","drama"', ("comedy", "drama")),
    ('"comedy", "drama" ', ("comedy", "drama")),
    ('"say \\"hi\\", ok"', ('say "hi", ok',)),
    ('"a\'b"', ("a'b",)),
    ('"x) OR 1=1 --"', ("x) OR 1=1 --",)),
    ('"SELECT * FROM items; DROP TABLE users"', ("SELECT * FROM items; DROP TABLE users",)),
    ("20", ("20",)),
    ("-1.5", ("-1.5",)),
])
def test_filter_values_are_parsed_strictly(text, values):
    assert parse_filter_values(text, "P") == values


@pytest.mark.parametrize("text,message", [
    ("comedy", "expected a double-quoted value at position 0"),
    ('"comedy",', "a value is missing after the last ','"),
    ('"comedy" "drama"', "expected a double-quoted value at position 0"),
    ('"a",drama', "expected a double-quoted value at position 4"),
    ("", "empty"),
    ('"' + "x" * 1001 + '"', "longer than 1000 characters"),
])
def test_bad_filter_values(text, message):
    with pytest.raises(UserError, match=message):
        parse_filter_values(text, "P")


def test_binding_skips_exclude_without_values_and_requires_include_values():
    parsed = parse_filter('INCLUDE ItemID WHERE Items.GENRE IN ($GENRE) | '
                          'EXCLUDE ItemID WHERE Items.CATEGORY IN ($CAT) | '
                          'INCLUDE ItemID WHERE Items.PRICE <= $PRICE')
    bound = bind(parsed, {"GENRE": '"comedy","x) OR 1=1"', "PRICE": '"20"'})
    assert str(bound) == ('INCLUDE ItemID WHERE Items.GENRE IN ("comedy", "x) OR 1=1") | '
                          'INCLUDE ItemID WHERE Items.PRICE <= 20')
    assert bound.parameters == set()
    assert bind(parsed, {"GENRE": '"a"', "PRICE": "5"}) == bind(parsed, {"PRICE": "5", "GENRE": '"a"'})
    with pytest.raises(UserError, match=r"\$GENRE needed by `INCLUDE ItemID WHERE Items.GENRE IN \(\$GENRE\)`"):
        bind(parsed, {"PRICE": "5"})
    with pytest.raises(UserError, match="Items.PRICE <= needs one number, got a, b"):
        bind(parsed, {"GENRE": '"a"', "PRICE": '"a","b"'})
    with pytest.raises(UserError, match="not a parameter name"):
        bind(parsed, {"GEN RE": '"a"'})


def test_config_with_a_bad_filter_fails_at_load(write_config, tmp_path):
    text = (REPO / "configs" / "synthetic-ecommerce.yaml").read_text().replace(
        "expression: EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN (\"purchase\")",
        "expression: EXCLUDE ItemID WHERE Items.BRAND < 5")
    with pytest.raises(ConfigError) as e:
        load_config(write_config(text))
    assert ("filters[0].expression: < compares numbers, and Items.BRAND is a string; use IN or NOT IN "
            "(at position 21)") in str(e.value)


def test_filter_validate_command():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "recsys_spark", "filter", "validate", "--config",
                               "configs/synthetic-ecommerce.yaml", *args], capture_output=True, text=True, cwd=REPO)

    ok = run("under-price")
    assert ok.returncode == 0
    assert ok.stdout.splitlines() == [
        'INCLUDE ItemID WHERE Items.PRICE < $MAX_PRICE | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")',
        "  datasets    Interactions, Items", "  parameters  $MAX_PRICE"]
    bad = run('include ItemID where Items.CATEGORY_L1 in ("books"')
    assert bad.returncode == 2
    assert bad.stderr.startswith('error: expected "," or ")", found the end of the expression (at position 50)')


# ------------------------------------------------------------------------------ property-based round trip

names = st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True)
strings = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
numbers = st.builds(lambda x: repr(x), st.integers(-10**6, 10**6)) | st.builds(
    lambda x: f"{x:.3f}", st.floats(-1e6, 1e6, allow_nan=False))
params = st.builds(Param, st.from_regex(r"[A-Za-z0-9_]{1,10}", fullmatch=True))
lists = st.lists(st.tuples(strings, st.just(False)) | st.tuples(numbers, st.just(True)), min_size=1, max_size=4).map(
    lambda vs: StringList(tuple(v for v, _ in vs), tuple(n for _, n in vs)))
list_values = lists | params | st.builds(CurrentItem, names)
scalars = st.builds(Number, numbers) | params | st.builds(CurrentItem, names)


def conditions(dataset_choices):
    return st.one_of(
        st.builds(Condition, st.sampled_from(dataset_choices), names, st.sampled_from(["IN", "NOT IN"]), list_values),
        st.builds(Condition, st.sampled_from(dataset_choices), names, st.sampled_from(["=", "<", "<=", ">", ">="]),
                  scalars))


expressions = st.builds(
    Expression, st.sampled_from(["INCLUDE", "EXCLUDE"]), st.sampled_from(["ItemID", "UserID"]),
    st.lists(st.lists(conditions(["Items", "Users", "Interactions"]), min_size=1, max_size=3).map(tuple),
             min_size=1, max_size=3).map(tuple),
    st.lists(conditions(["CurrentUser"]).filter(lambda c: not isinstance(c.value, CurrentItem)),
             max_size=2).map(tuple))
filters = st.lists(expressions, min_size=1, max_size=3).map(lambda es: Filter(tuple(es)))


@settings(max_examples=300, deadline=None)
@given(filters)
def test_parse_of_print_is_the_same_ast(filter_):
    assert parse_filter(str(filter_)) == filter_


@given(strings)
def test_quoted_strings_round_trip(value):
    assert parse_filter_values(quote(value), "P") == (value,)


def test_items_and_users_are_not_mixed_in_one_filter():
    text = 'INCLUDE ItemID WHERE Items.GENRE IN ("a") | EXCLUDE UserID WHERE Users.AGE < 3'
    with pytest.raises(FilterError, match="selects items .ItemID. or users .UserID., not both"):
        check_filter(parse_filter(text), SCHEMAS.get, text)
