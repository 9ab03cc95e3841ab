"""Filter conditions evaluated over Arrow tables: the one implementation the batch job (inside Spark tasks)
and the real-time server share. Values are compared as data, never spliced into query text.

Semantics, as the managed service documents them: ``IN`` on a categorical field matches when any of its
``|``-separated values is in the list; ``Interactions.EVENT_TYPE`` compares case-insensitively and ``"*"``
is any event type; a missing (null) value matches neither ``IN`` nor a comparison, so ``NOT IN`` keeps it.

>>> import pyarrow as pa
>>> from recsys_spark.core.filters.syntax import parse_filter
>>> from recsys_spark.schema import DatasetSchema
>>> schema = DatasetSchema.model_validate({"fields": [{"name": "ITEM_ID", "type": "string"},
...     {"name": "GENRES", "type": ["null", "string"], "categorical": True}]})
>>> e = parse_filter('INCLUDE ItemID WHERE Items.GENRES IN ("drama")').expressions[0]
>>> matches(e.any_of, pa.table({"ITEM_ID": ["a", "b"], "GENRES": ["comedy|drama", None]}), schema).tolist()
[True, False]
"""

from __future__ import annotations

from functools import reduce

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_spark.core.filters.syntax import LIST_OPS, Condition, CurrentItem, Number, Param
from recsys_spark.errors import UserError
from recsys_spark.schema import NUMERIC_TYPES, DatasetSchema

_COMPARE = {"=": pc.equal, "<": pc.less, "<=": pc.less_equal, ">": pc.greater, ">=": pc.greater_equal}


def matches(groups, table: pa.Table, schema: DatasetSchema | None, current: dict | None = None) -> np.ndarray:
    """Which rows of ``table`` pass ``groups`` (a disjunction of conjunctions of conditions); ``current``
    holds the query item's field values for ``CurrentItem.F`` (None: the expression has none)."""
    n = table.num_rows
    any_of = [reduce(np.logical_and, (_condition(c, table, schema, current) for c in group), np.ones(n, bool))
              for group in groups]
    return reduce(np.logical_or, any_of, np.zeros(n, dtype=bool))


def _condition(c: Condition, table: pa.Table, schema: DatasetSchema | None, current: dict | None) -> np.ndarray:
    if isinstance(c.value, Param):
        raise UserError(f"${c.value.name} has no value")
    column = table.column(c.field)
    field = schema.field(c.field) if schema is not None else None
    if isinstance(c.value, CurrentItem):
        matched = _against_value(c, column, field, None if current is None else current.get(c.value.field))
    elif c.dataset == "Interactions":  # EVENT_TYPE: case-insensitive, "*" is any type
        values = [v.lower() for v in c.value.values]
        matched = pa.scalar(True) if "*" in values else pc.is_in(pc.utf8_lower(column), pa.array(values))
    elif c.op in LIST_OPS:
        values = c.value.values
        if field.base_type in NUMERIC_TYPES:
            matched = pc.is_in(pc.cast(column, pa.float64()), pa.array([float(v) for v in values]))
        elif field.categorical:
            matched = _any_part_in(column, pa.array(values, pa.string()))
        else:
            matched = pc.is_in(column, pa.array(values, pa.string()))
    else:
        bound = float(c.value.value) if isinstance(c.value, Number) else None
        matched = _COMPARE[c.op](pc.cast(column, pa.float64()), pa.scalar(bound, pa.float64()))
    return _decided(matched, c.op, table.num_rows)


def _against_value(c: Condition, column, field, value) -> pa.Array:
    """``Items.F op CurrentItem.G`` with G's value for the query item (None when it has none: no match)."""
    if value is None:
        return pa.scalar(False)
    if c.op in LIST_OPS and field is not None and field.categorical:
        return _any_part_in(column, pa.array(str(value).split("|"), pa.string()))
    if c.op in LIST_OPS:
        return pc.equal(column, pa.scalar(value, column.type))
    return _COMPARE[c.op](pc.cast(column, pa.float64()), pa.scalar(float(value), pa.float64()))


def _any_part_in(column, values: pa.Array) -> pa.Array:
    """Per row: does any ``|``-separated part of the value appear in ``values``."""
    parts = pc.split_pattern(column, "|")
    hit = pc.is_in(pc.list_flatten(parts), values)
    rows = pc.list_parent_indices(parts)
    out = np.zeros(len(column), dtype=bool)
    out[rows.to_numpy()[hit.to_numpy(zero_copy_only=False)]] = True
    return pa.array(out, mask=pc.is_null(column).to_numpy(zero_copy_only=False))


def _decided(matched, op: str, n: int) -> np.ndarray:
    """A nullable match as booleans: null (a missing value) never matches; NOT IN is its complement."""
    if isinstance(matched, pa.Scalar):
        out = np.full(n, bool(matched.as_py()))
    else:
        out = pc.fill_null(matched, False).to_numpy(zero_copy_only=False).astype(bool)
    return ~out if op == "NOT IN" else out
