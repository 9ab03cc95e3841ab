"""The filter language: the service's documented examples, malformed expressions with their positions,
schema rules, filter values and binding, config-time checking, and a property-based round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_spark.config import load_config
from recsys_spark.errors import ConfigError, UserError
from recsys_spark.core.filters import FilterError, bind, check_filter, compile_plan, parse_filter, parse_filter_values
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


# ------------------------------------------------------------------- names without regard to case, limits


@pytest.mark.parametrize("text,checked", [
    # as the service's own sample notebooks write them, against schemas declaring EVENT_TYPE and CATEGORY_L1
    ('EXCLUDE ItemID WHERE Interactions.event_type IN ("click")',
     'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")'),
    ('EXCLUDE ItemID WHERE ITEMS.CATEGORY_L1 IN ("shoe")', 'EXCLUDE ItemID WHERE Items.CATEGORY_L1 IN ("shoe")'),
    ('INCLUDE ItemID WHERE Items.genre IN ($GENRE)', 'INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)'),
    ('include itemid where items.price < currentitem.Price and iTeMs.Genre in CURRENTITEM.genre',
     'INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE AND Items.GENRE IN CurrentItem.GENRE'),
    ('EXCLUDE ItemID WHERE Items.genre IN ("Horror") IF currentuser.age < 18',  # values stay as written
     'EXCLUDE ItemID WHERE Items.GENRE IN ("Horror") IF CurrentUser.AGE < 18'),
    ('INCLUDE UserID WHERE users.Membership_Status IN ("Gold") | EXCLUDE UserID WHERE INTERACTIONS.Event_Type '
     'IN ("*")',
     'INCLUDE UserID WHERE Users.MEMBERSHIP_STATUS IN ("Gold") | EXCLUDE UserID WHERE Interactions.EVENT_TYPE '
     'IN ("*")'),
])
def test_dataset_and_field_names_match_without_regard_to_case(text, checked):
    result = check_filter(parse_filter(text), SCHEMAS.get, text)
    assert str(result) == checked
    assert result == parse_filter(checked)


def test_a_field_matching_two_schema_fields_by_case_is_an_error_naming_both():
    items = schema(("ITEM_ID", "string"), ("GENRE", "string", True), ("Genre", "string", True))
    for text in ('INCLUDE ItemID WHERE Items.genre IN ("a")',
                 'INCLUDE ItemID WHERE Items.ITEM_ID IN CurrentItem.genre'):
        with pytest.raises(FilterError, match="Items.genre matches GENRE and Genre, which differ only by case"):
            check_filter(parse_filter(text), {"items": items}.get, text)


def test_expressions_of_at_most_2500_characters():
    def of_length(n):
        head = 'INCLUDE ItemID WHERE Items.GENRE IN ("'
        return head + "x" * (n - len(head) - 2) + '")'

    assert len(of_length(2500)) == 2500 and parse_filter(of_length(2500))
    with pytest.raises(FilterError) as e:
        parse_filter(of_length(2501))
    assert e.value.message == "the expression has 2501 characters; at most 2500 are allowed"
    assert e.value.position == 2500


def test_parameter_names_of_at_most_50_characters():
    assert parse_filter(f"INCLUDE ItemID WHERE Items.PRICE < ${'P' * 50}").parameters == {"P" * 50}
    with pytest.raises(FilterError) as e:
        parse_filter(f"INCLUDE ItemID WHERE Items.PRICE < ${'P' * 51}")
    assert "a parameter name has at most 50 characters" in e.value.message and e.value.position == 35


def test_filter_values_limits():
    parsed = parse_filter("INCLUDE ItemID WHERE Items.GENRE IN ($G)")
    assert bind(parsed, {"G": '"a"', **{f"K{i}": "1" for i in range(24)}}).parameters == set()
    with pytest.raises(UserError, match="at most 25 parameters, got 26"):
        bind(parsed, {"G": '"a"', **{f"K{i}": "1" for i in range(25)}})
    assert bind(parsed, {"G": '"a"', "K" * 50: "1"}).parameters == set()
    with pytest.raises(UserError, match="has 51 characters; at most 50"):
        bind(parsed, {"G": '"a"', "K" * 51: "1"})
    assert parse_filter_values('"' + "x" * 998 + '"', "G") == ("x" * 998,)  # 1000 characters with the quotes
    with pytest.raises(UserError, match="1001 characters, longer than 1000"):
        parse_filter_values('"' + "x" * 999 + '"', "G")


def test_distinct_fields_per_filter():
    ten = ('INCLUDE ItemID WHERE Items.CATEGORY IN ("a") AND Items.CATEGORY_L1 IN ("a") AND Items.category IN ("b") '
           'AND Items.CATEGORY_L2 IN ("a") AND Items.GENRE IN CurrentItem.DESCRIPTION AND Items.PRICE < 3 '
           'AND Items.AVAILABLE IN ("True") '
           '| EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("view") '
           '| EXCLUDE ItemID WHERE Items.CREATION_TIMESTAMP > 1 IF CurrentUser.AGE > 1 AND currentuser.age < 9')
    assert len(check_filter(parse_filter(ten), SCHEMAS.get, ten, max_fields=10).expressions) == 3
    eleven = ten + ' | INCLUDE ItemID WHERE Items.PRICE > 1 IF CurrentUser.MEMBERSHIP_STATUS IN ("gold")'
    with pytest.raises(FilterError) as e:
        check_filter(parse_filter(eleven), SCHEMAS.get, eleven, max_fields=10)
    assert e.value.message.startswith("the filter uses 11 distinct fields (Items.CATEGORY, Items.CATEGORY_L1, "
                                      "Items.CATEGORY_L2, Items.GENRE, Items.DESCRIPTION, ")
    assert "at most 10 are allowed (filter_limits.fields_per_filter" in e.value.message
    assert e.value.position == eleven.index("CurrentUser.MEMBERSHIP_STATUS")
    check_filter(parse_filter(eleven), SCHEMAS.get, eleven, max_fields=11)


def limits_config(filters: list[str], limits: str = "") -> str:
    fields = "\n".join(f"        - {{name: F{i:02}, type: string, categorical: true}}" for i in range(1, 23))
    entries = "\n".join(f"  - {{name: f{i}, expression: '{text}'}}" for i, text in enumerate(filters))
    return f"""dataset_group:
  name: shop
  root: warehouse
  schemas:
    interactions:
      fields:
        - {{name: USER_ID, type: string}}
        - {{name: ITEM_ID, type: string}}
        - {{name: TIMESTAMP, type: long}}
        - {{name: EVENT_TYPE, type: string}}
    items:
      fields:
        - {{name: ITEM_ID, type: string}}
{fields}
filters:
{entries}
{limits}"""


def reading(first: int, last: int) -> str:
    return "INCLUDE ItemID WHERE " + " AND ".join(f'Items.f{i:02} IN ("a")' for i in range(first, last + 1))


def test_distinct_fields_per_dataset_group_and_per_filter_are_settings(write_config):
    twenty_two = [reading(1, 10), reading(5, 5) + " | " + reading(11, 19), reading(19, 21), reading(21, 22)]
    with pytest.raises(ConfigError) as e:
        load_config(write_config(limits_config(twenty_two)))
    assert ("filters[2].expression: the filters up to this one read 21 distinct fields together; a dataset "
            "group's filters may read at most 20 (filter_limits.fields_per_dataset_group)") in str(e.value)
    assert str(e.value).count("distinct fields") == 1  # once, where the group passes the limit
    config = load_config(write_config(limits_config(twenty_two, "filter_limits: {fields_per_dataset_group: 22}")))
    assert str(config.parsed_filter("f3")) == 'INCLUDE ItemID WHERE Items.F21 IN ("a") AND Items.F22 IN ("a")'

    eleven = [reading(1, 11)]
    with pytest.raises(ConfigError) as e:
        load_config(write_config(limits_config(eleven)))
    assert "filters[0].expression: the filter uses 11 distinct fields" in str(e.value)
    assert f"(at position {eleven[0].index('Items.f11')})" in str(e.value)
    load_config(write_config(limits_config(eleven, "filter_limits: {fields_per_filter: 11}")))
    with pytest.raises(ConfigError, match=r"filter_limits\.fields_per_filter: Input should be greater than or"):
        load_config(write_config(limits_config(eleven, "filter_limits: {fields_per_filter: 0}")))


def test_numeric_parameters_take_bare_and_quoted_numbers():
    parsed = parse_filter("INCLUDE ItemID WHERE Items.PRICE <= $P AND Items.PRICE IN ($Q)")
    assert bind(parsed, {"P": "10", "Q": "10"}) == bind(parsed, {"P": '"10"', "Q": '"10"'})
    assert str(bind(parsed, {"P": '"10"', "Q": '"10", "12.5"'})) == \
        'INCLUDE ItemID WHERE Items.PRICE <= 10 AND Items.PRICE IN ("10", "12.5")'


def test_a_value_that_is_no_number_fails_its_binding_at_compile_time():
    items = pa.table({"ITEM_ID": ["a"], "PRICE": [5.0]})
    bound = bind(parse_filter("INCLUDE ItemID WHERE Items.PRICE IN ($P)"), {"P": '"cheap"'})
    with pytest.raises(UserError, match="Items.PRICE is numeric; 'cheap' is not a number"):
        compile_plan(bound, np.array(["a"], dtype=object), items, SCHEMAS.get)
