"""The service's rules for a parsed filter against the dataset group's schemas.

>>> check_filter(parse_filter(text), config.schema, text)   # raises FilterError, else None  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

from recsys_spark.core.filters.syntax import COMPARE_OPS, Condition, CurrentItem, Filter, FilterError, StringList
from recsys_spark.schema import NUMERIC_TYPES, DatasetSchema

ALLOWED = {"ItemID": ("Items", "Interactions"), "UserID": ("Users", "Interactions")}
SCHEMA_OF = {"Items": "items", "Users": "users", "CurrentUser": "users", "Interactions": "interactions"}


def check_filter(filter_: Filter, schema_of: Callable[[str], DatasetSchema | None], text: str) -> None:
    """Raise FilterError at the first condition that breaks a rule; return None when the filter is valid."""

    def fail(condition: Condition, message: str):
        raise FilterError(message, text, condition.position)

    targets = {e.target for e in filter_.expressions}
    if len(targets) > 1:
        second = next(e for e in filter_.expressions if e.target != filter_.expressions[0].target)
        fail(second.conditions[0], "a filter selects items (ItemID) or users (UserID), not both")
    for expression in filter_.expressions:
        first = expression.conditions[0]
        for c in expression.conditions:
            if c.dataset not in ALLOWED[expression.target]:
                fail(c, f"{expression.target} filters can use {' and '.join(ALLOWED[expression.target])} "
                        f"conditions, not {c.dataset}")
            if c.dataset != first.dataset:
                fail(c, f"one expression filters on one dataset ({first.dataset} here); chain {c.dataset} "
                        "conditions as another expression with |")
            if isinstance(c.value, CurrentItem) and expression.target != "ItemID":
                fail(c, "CurrentItem is only available to ItemID filters of related-items recipes")
            _check_condition(c, schema_of, fail)
        if expression.only_if and expression.target != "ItemID":
            fail(expression.only_if[0], "IF CurrentUser conditions are only available to ItemID filters")
        for c in expression.only_if:
            if isinstance(c.value, CurrentItem):
                fail(c, "IF conditions compare CurrentUser fields with values or $PARAMs, not CurrentItem")
            _check_condition(c, schema_of, fail)


def _check_condition(c: Condition, schema_of, fail) -> None:
    if c.dataset == "Interactions":
        if c.field != "EVENT_TYPE":
            fail(c, f"interaction filters can only use Interactions.EVENT_TYPE, not Interactions.{c.field}")
        if c.op in COMPARE_OPS:
            fail(c, "Interactions.EVENT_TYPE takes IN or NOT IN with a list of event types")
        return
    schema = schema_of(SCHEMA_OF[c.dataset])
    if schema is None:
        fail(c, f"{c.dataset}.{c.field}: the config has no {SCHEMA_OF[c.dataset]} schema")
    field = schema.field(c.field)
    if field is None:
        fail(c, f"{SCHEMA_OF[c.dataset].capitalize()} has no field {c.field}; its fields: {', '.join(schema.names)}")
    if field.textual:
        fail(c, f"{c.dataset}.{c.field} is a textual field; textual fields cannot be filtered on")
    if field.base_type == "boolean":
        fail(c, f"{c.dataset}.{c.field} is boolean; boolean fields cannot be filtered on (store them as "
                "\"True\"/\"False\" strings)")
    numeric = field.base_type in NUMERIC_TYPES
    if c.op in COMPARE_OPS and not numeric:
        fail(c, f"{c.op} compares numbers, and {c.dataset}.{c.field} is a {field.base_type}; use IN or NOT IN")
    if isinstance(c.value, StringList):
        if "*" in c.value.values:
            fail(c, '"*" (any event type) is only for Interactions.EVENT_TYPE')
        if numeric:
            for v in c.value.values:
                if not _is_number(v):
                    fail(c, f"{c.dataset}.{c.field} is numeric; {v!r} is not a number")
    if isinstance(c.value, CurrentItem):
        other = (schema_of("items") or schema).field(c.value.field)
        if other is None:
            fail(c, f"Items has no field {c.value.field} for CurrentItem.{c.value.field}")
        if (other.base_type in NUMERIC_TYPES) != numeric:
            fail(c, f"{c.dataset}.{c.field} and CurrentItem.{c.value.field} are not both numeric or both strings")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
