"""The service's rules for a parsed filter against the dataset group's schemas.

Field names are matched to the schemas without regard to case, as the service does (its own sample
notebooks write ``Interactions.event_type`` for EVENT_TYPE); the checked filter carries the schemas'
spelling, so predicates find the columns.

>>> check_filter(parse_filter(text), config.schema, text)   # the checked filter, or FilterError  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from recsys_spark.core.filters.syntax import (COMPARE_OPS, Condition, CurrentItem, Expression, Filter, FilterError,
                                              StringList)
from recsys_spark.schema import NUMERIC_TYPES, DatasetSchema, SchemaField

ALLOWED = {"ItemID": ("Items", "Interactions"), "UserID": ("Users", "Interactions")}
SCHEMA_OF = {"Items": "items", "Users": "users", "CurrentUser": "users", "Interactions": "interactions"}


def check_filter(filter_: Filter, schema_of: Callable[[str], DatasetSchema | None], text: str,
                 max_fields: int | None = None) -> Filter:
    """Raise FilterError at the first condition that breaks a rule (``max_fields``: at most that many
    distinct fields, see :func:`filter_fields`); return the filter with the schemas' field names."""

    def fail(condition: Condition, message: str):
        raise FilterError(message, text, condition.position)

    targets = {e.target for e in filter_.expressions}
    if len(targets) > 1:
        second = next(e for e in filter_.expressions if e.target != filter_.expressions[0].target)
        fail(second.conditions[0], "a filter selects items (ItemID) or users (UserID), not both")
    checked = []
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
        if expression.only_if and expression.target != "ItemID":
            fail(expression.only_if[0], "IF CurrentUser conditions are only available to ItemID filters")
        for c in expression.only_if:
            if isinstance(c.value, CurrentItem):
                fail(c, "IF conditions compare CurrentUser fields with values or $PARAMs, not CurrentItem")
        checked.append(Expression(
            expression.action, expression.target,
            tuple(tuple(_checked_condition(c, schema_of, fail) for c in group) for group in expression.any_of),
            tuple(_checked_condition(c, schema_of, fail) for c in expression.only_if)))
    out = Filter(tuple(checked))
    fields = filter_fields(out)
    if max_fields is not None and len(fields) > max_fields:
        fail(list(fields.values())[max_fields],
             f"the filter uses {len(fields)} distinct fields ({', '.join(fields)}); at most {max_fields} are "
             "allowed (filter_limits.fields_per_filter in the config)")
    return out


def filter_fields(filter_: Filter) -> dict[str, Condition]:
    """The distinct dataset fields a checked filter reads (``Items.GENRE``; CurrentUser.F is Users.F and
    CurrentItem.F is Items.F), in the order of the text, each with the first condition that reads it: the
    service's limits count these."""
    out: dict[str, Condition] = {}
    for e in filter_.expressions:
        for c in (*e.conditions, *e.only_if):
            out.setdefault(f"{'Users' if c.dataset == 'CurrentUser' else c.dataset}.{c.field}", c)
            if isinstance(c.value, CurrentItem):
                out.setdefault(f"Items.{c.value.field}", c)
    return out


def _schema_field(schema: DatasetSchema, dataset: str, name: str, c: Condition, fail) -> SchemaField:
    """The schema's field called ``name`` without regard to case."""
    found = [f for f in schema.fields if f.name.lower() == name.lower()]
    if len(found) > 1:
        fail(c, f"{dataset}.{name} matches {' and '.join(f.name for f in found)}, which differ only by case")
    if not found:
        fail(c, f"{dataset} has no field {name}; its fields: {', '.join(schema.names)}")
    return found[0]


def _checked_condition(c: Condition, schema_of, fail) -> Condition:
    """``c`` with the schema's field names, or ``fail`` at the first rule it breaks."""
    if c.dataset == "Interactions":
        if c.field.upper() != "EVENT_TYPE":
            fail(c, f"interaction filters can only use Interactions.EVENT_TYPE, not Interactions.{c.field}")
        if c.op in COMPARE_OPS:
            fail(c, "Interactions.EVENT_TYPE takes IN or NOT IN with a list of event types")
        return replace(c, field="EVENT_TYPE")
    schema = schema_of(SCHEMA_OF[c.dataset])
    if schema is None:
        fail(c, f"{c.dataset}.{c.field}: the config has no {SCHEMA_OF[c.dataset]} schema")
    field = _schema_field(schema, SCHEMA_OF[c.dataset].capitalize(), c.field, c, fail)
    c = replace(c, field=field.name)
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
                if not is_number(v):
                    fail(c, f"{c.dataset}.{c.field} is numeric; {v!r} is not a number")
    if isinstance(c.value, CurrentItem):
        other = _schema_field(schema_of("items") or schema, "Items", c.value.field, c, fail)
        if (other.base_type in NUMERIC_TYPES) != numeric:
            fail(c, f"{c.dataset}.{c.field} and CurrentItem.{other.name} are not both numeric or both strings")
        c = replace(c, value=CurrentItem(other.name))
    return c


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
