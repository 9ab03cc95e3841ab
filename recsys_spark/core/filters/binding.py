"""Per-request parameter values (``filterValues``) and binding them into a filter.

Values arrive in the service's format: one string per parameter holding comma-separated, double-quoted
values, e.g. ``{"GENRE": "\\"comedy\\",\\"drama\\""}``; a number may be written bare (``{"PRICE": "20"}``).
Binding replaces each ``$PARAM`` by its values; an EXCLUDE expression with a parameter that has no value
is skipped, an INCLUDE expression with one is an error. The bound filter has no parameters left and is
hashable, so a batch computes each distinct binding once.

>>> from recsys_spark.core.filters.syntax import parse_filter
>>> bind(parse_filter('INCLUDE ItemID WHERE Items.GENRE IN ($G)'), {"G": '"comedy","drama"'}).__str__()
'INCLUDE ItemID WHERE Items.GENRE IN ("comedy", "drama")'
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from recsys_spark.errors import UserError
from recsys_spark.core.filters.syntax import (LIST_OPS, MAX_PARAMETER_NAME, Condition, Expression, Filter, Number,
                                              Param, StringList)

# The service's limits on filterValues: keys, a key's length, a value's length.
MAX_KEYS, MAX_KEY_LENGTH, MAX_VALUE_LENGTH = 25, MAX_PARAMETER_NAME, 1000
QUOTED = re.compile(r'\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
BARE_NUMBER = re.compile(r"\s*(-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*")


def parse_filter_values(text: str, name: str = "value") -> tuple[str, ...]:
    """``'"comedy","drama"'`` -> ``("comedy", "drama")``; a bare number -> ``("20",)``; anything else is an
    error naming the parameter and the position."""
    if len(text) > MAX_VALUE_LENGTH:
        raise UserError(f"filterValues {name}: {len(text)} characters, longer than {MAX_VALUE_LENGTH} characters")
    if (number := BARE_NUMBER.fullmatch(text)) is not None:
        return (number.group(1),)
    values, position = [], 0
    while position < len(text):
        m = QUOTED.match(text, position)
        if m is None:
            raise UserError(f'filterValues {name}: expected a double-quoted value at position {position} of '
                            f'{text!r} (the format is "a","b")')
        values.append(re.sub(r"\\(.)", r"\1", m.group(1)))
        position = m.end()
        if m.group(2) == "," and position >= len(text):
            raise UserError(f"filterValues {name}: a value is missing after the last ',' in {text!r}")
    if not values:
        raise UserError(f"filterValues {name}: empty; give at least one value")
    return tuple(values)


def bind(filter_: Filter, filter_values: Mapping[str, str] | None) -> Filter:
    """The filter with every parameter replaced by its values (see the module's rules)."""
    filter_values = dict(filter_values or {})
    if len(filter_values) > MAX_KEYS:
        raise UserError(f"filterValues: at most {MAX_KEYS} parameters, got {len(filter_values)}")
    for key in filter_values:
        if not re.fullmatch(r"[A-Za-z0-9_]+", key):
            raise UserError(f"filterValues: {key!r} is not a parameter name (letters, digits and _)")
        if len(key) > MAX_KEY_LENGTH:
            raise UserError(f"filterValues: the key {key!r} has {len(key)} characters; at most {MAX_KEY_LENGTH}")
    parsed = {k: parse_filter_values(v, k) for k, v in filter_values.items() if isinstance(v, str)}
    wrong = [k for k, v in filter_values.items() if not isinstance(v, str)]
    if wrong:
        raise UserError(f"filterValues: {', '.join(wrong)} must be strings such as \"\\\"a\\\",\\\"b\\\"\"")
    kept = []
    for expression in filter_.expressions:
        missing = sorted(expression.parameters - parsed.keys())
        if missing and expression.action == "EXCLUDE":
            continue
        if missing:
            raise UserError(f"filterValues: {', '.join('$' + m for m in missing)} needed by `{expression}`")
        kept.append(Expression(expression.action, expression.target,
                               tuple(tuple(_bound(c, parsed) for c in group) for group in expression.any_of),
                               tuple(_bound(c, parsed) for c in expression.only_if)))
    return Filter(tuple(kept))


def _bound(c: Condition, values: Mapping[str, tuple[str, ...]]) -> Condition:
    if not isinstance(c.value, Param):
        return c
    given = values[c.value.name]
    if c.op in LIST_OPS:
        return Condition(c.dataset, c.field, c.op, StringList(given, (False,) * len(given)), c.position)
    if len(given) != 1 or BARE_NUMBER.fullmatch(given[0]) is None:
        raise UserError(f"filterValues {c.value.name}: {c.dataset}.{c.field} {c.op} needs one number, got "
                        f"{', '.join(given)}")
    return Condition(c.dataset, c.field, c.op, Number(given[0].strip()), c.position)
