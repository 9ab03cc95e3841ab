"""A bound filter compiled against a model's catalog and the dataset group's metadata, and applied to score
blocks: the one form every scorer uses (the batch job's Spark tasks, evaluation, the real-time server).

:func:`compile_plan` turns each expression of a bound filter (no parameters left) into a :class:`RulePlan`:

* ``Items`` conditions -> a boolean ``mask`` over the catalog, evaluated once over the items table;
* ``Interactions`` conditions -> ``per_user``: each user's items come from :func:`user_lists` (the user's
  ``recent_per_type`` most recent interactions of each event type that pass), carried on the request row;
* ``IF CurrentUser ...`` -> ``condition``: the rule applies to a row only when its user's ``applies`` list
  (also from :func:`user_lists`) holds the rule's index;
* ``CurrentItem.F`` conditions (related-items queries) -> evaluated per query item against the catalog's
  metadata, which the plan keeps.

For a row, the allowed items are (union of the applicable INCLUDE rules, or every item when none applies)
minus (union of the applicable EXCLUDE rules); :func:`apply_filter` sets the others to minus infinity.
Related-items rows (no user) take item-level and CurrentItem rules; user rows take every other rule.

>>> import numpy as np, pyarrow as pa
>>> from recsys_spark.core.filters.syntax import parse_filter
>>> from recsys_spark.schema import DatasetSchema
>>> schema = DatasetSchema.model_validate({"fields": [{"name": "ITEM_ID", "type": "string"},
...                                                    {"name": "PRICE", "type": "double"}]})
>>> items = pa.table({"ITEM_ID": ["b", "a"], "PRICE": [30.0, 5.0]})
>>> plan = compile_plan(parse_filter("INCLUDE ItemID WHERE Items.PRICE < 10"), np.array(["a", "b"], dtype=object),
...                     items, {"items": schema}.get)
>>> scores = np.ones((1, 2), dtype=np.float32)
>>> apply_filter([plan], scores, RowFilters.unfiltered(1))
>>> scores.tolist()
[[1.0, -inf]]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys_spark.core.filters.predicates import matches
from recsys_spark.core.filters.rules import SCHEMA_OF, is_number
from recsys_spark.core.filters.syntax import CurrentItem, Expression, Filter, StringList
from recsys_spark.errors import UserError
from recsys_spark.schema import NUMERIC_TYPES, DatasetSchema

DEFAULT_RECENT_PER_TYPE = 100
EVENT_COLUMNS = ("USER_ID", "ITEM_ID", "EVENT_TYPE", "TIMESTAMP")
#: What :func:`user_lists` returns, one row per user that any per-user or conditional rule concerns.
USER_LISTS = pa.schema([("USER_ID", pa.string()), ("include", pa.list_(pa.string())),
                        ("exclude", pa.list_(pa.string())), ("applies", pa.list_(pa.int32()))])


@dataclass
class RulePlan:
    """One compiled expression (see the module docstring)."""

    expression: Expression
    mask: np.ndarray | None = None
    condition: int | None = None

    @property
    def action(self) -> str:
        return self.expression.action

    @property
    def per_user(self) -> bool:
        return self.expression.dataset == "Interactions"

    @property
    def current_item(self) -> bool:
        return any(isinstance(c.value, CurrentItem) for c in self.expression.conditions)


@dataclass
class FilterPlan:
    """The rules of one binding of a filter's parameters, or the ``error`` that binding produced (its
    requests fail with it). ``items``: the items table's rows for the catalog (``present`` says which catalog
    items it has) and ``item_rows`` (item ID -> row of ``metadata``), kept only for CurrentItem rules."""

    rules: list[RulePlan] = field(default_factory=list)
    error: str | None = None
    items_schema: DatasetSchema | None = None
    catalog_metadata: pa.Table | None = None
    present: np.ndarray | None = None
    metadata: pa.Table | None = None
    item_rows: pd.Index | None = None

    @property
    def needs_user_lists(self) -> bool:
        return any(r.per_user or r.condition is not None for r in self.rules)

    def current_item_mask(self, rule: RulePlan, query_item: str) -> np.ndarray:
        """The catalog items ``rule`` (a CurrentItem rule) selects when the query item is ``query_item``."""
        row = self.item_rows.get_indexer([query_item])[0] if self.item_rows is not None else -1
        values = {} if row < 0 else {k: v[0] for k, v in self.metadata.slice(row, 1).to_pydict().items()}
        return matches(rule.expression.any_of, self.catalog_metadata, self.items_schema, values) & self.present


def compile_plan(bound: Filter, catalog: np.ndarray, items: pa.Table | None,
                 schema_of: Callable[[str], DatasetSchema | None]) -> FilterPlan:
    """Compile a bound ItemID filter against ``catalog`` (the model's item IDs) and ``items`` (the items
    dataset as Arrow, at least ITEM_ID and the fields the filter reads; None when there is none)."""
    if bound.parameters:
        raise UserError(f"bind values to {', '.join('$' + p for p in sorted(bound.parameters))} before compiling")
    plan = FilterPlan(items_schema=schema_of("items"))
    if items is not None:
        ids = items.column("ITEM_ID").to_numpy(zero_copy_only=False)
        plan.item_rows = pd.Index(ids)
        rows = plan.item_rows.get_indexer(catalog)
        plan.present = rows >= 0
        plan.catalog_metadata = (items.take(pa.array(np.maximum(rows, 0))) if len(ids) else
                                 pa.table({c.name: pa.nulls(len(catalog), c.type) for c in items.schema}))
        plan.metadata = items
    for k, e in enumerate(bound.expressions):
        if e.target != "ItemID":
            raise UserError(f"`{e}` selects users, not items: use it as a user segment")
        _check_bound_numbers(e, schema_of)
        rule = RulePlan(e, condition=k if e.only_if else None)
        if rule.current_item and e.only_if:
            raise UserError(f"`{e}`: CurrentItem conditions apply to related-items queries, without IF "
                            "CurrentUser conditions")
        if e.dataset == "Items" and not rule.current_item:
            rule.mask = (np.zeros(len(catalog), dtype=bool) if items is None
                         else matches(e.any_of, plan.catalog_metadata, plan.items_schema) & plan.present)
        if rule.current_item and items is None:
            raise UserError(f"`{e}` needs the items dataset, which has no table yet")
        plan.rules.append(rule)
    return plan


def _check_bound_numbers(e: Expression, schema_of: Callable[[str], DatasetSchema | None]) -> None:
    """Values bound to an IN list of a numeric field must be numbers: the expression was checked before its
    filterValues were known, and a bad value must fail its own requests, not the job."""
    for c in (*e.conditions, *e.only_if):
        schema = schema_of(SCHEMA_OF[c.dataset])
        field = schema.field(c.field) if schema is not None else None
        if isinstance(c.value, StringList) and field is not None and field.base_type in NUMERIC_TYPES:
            for v in c.value.values:
                if not is_number(v):
                    raise UserError(f"{c.dataset}.{c.field} is numeric; {v!r} is not a number")


def user_lists(plan: FilterPlan, events: pa.Table | None, users: pa.Table | None,
               schema_of: Callable[[str], DatasetSchema | None],
               recent_per_type: int = DEFAULT_RECENT_PER_TYPE) -> pa.Table:
    """Per user (every user of ``events`` and ``users``, whole: all of a user's rows must be here): the
    ``include`` / ``exclude`` items of the plan's per-user rules and the indexes of the conditional rules
    that ``applies`` to them (:data:`USER_LISTS`). ``events``: :data:`EVENT_COLUMNS`; ``users``: the users
    dataset's rows (USER_ID and the fields IF conditions read)."""
    applies, pairs = [], {"include": [], "exclude": []}
    for rule in plan.rules:
        k, e = rule.condition, rule.expression
        users_applying = None
        if k is not None:
            chosen = (users.filter(pa.array(matches([e.only_if], users, schema_of("users"))))
                      if users is not None and users.num_rows else None)
            users_applying = chosen.column("USER_ID") if chosen is not None else pa.array([], pa.string())
            applies.append(pa.table({"USER_ID": users_applying,
                                     "applies": pa.array(np.full(len(users_applying), k, np.int32))}))
        if rule.per_user and events is not None and events.num_rows:
            recent = _most_recent(events.filter(pa.array(matches(e.any_of, events, None))), recent_per_type)
            if users_applying is not None:
                recent = recent.filter(pc.is_in(recent.column("USER_ID"), users_applying))
            pairs["include" if e.action == "INCLUDE" else "exclude"].append(recent.select(["USER_ID", "ITEM_ID"]))
    lists = {name: _grouped(pa.concat_tables(tables), "ITEM_ID", name, pa.string())
             for name, tables in pairs.items() if tables}
    if applies:
        lists["applies"] = _grouped(pa.concat_tables(applies), "applies", "applies", pa.int32())
    if not lists:
        return USER_LISTS.empty_table()
    # One row per user of any list (Arrow's joins take no list columns: aligned by position instead).
    ids = pc.unique(pa.concat_arrays([t.column("USER_ID").combine_chunks() for t in lists.values()]))
    return pa.table({name: ids if name == "USER_ID" else
                     lists[name].column(name).take(pc.index_in(ids, lists[name].column("USER_ID")))
                     if name in lists else pa.nulls(len(ids), kind)
                     for name, kind in zip(USER_LISTS.names, USER_LISTS.types)}, schema=USER_LISTS)


def select_users(bound: Filter, users: pa.Table, events: pa.Table | None,
                 schema_of: Callable[[str], DatasetSchema | None]) -> set[str]:
    """The user IDs a bound user-segment filter (``INCLUDE|EXCLUDE UserID ...``) selects among ``users``:
    those matching an INCLUDE expression (everyone when there is none) minus those matching an EXCLUDE
    one; an Interactions condition matches users with an interaction of those event types (``events``)."""
    chosen = {"INCLUDE": set(), "EXCLUDE": set()}
    for e in bound.expressions:
        if e.target != "UserID":
            raise UserError(f"`{e}` selects items, not users")
        table, schema = (users, schema_of("users")) if e.dataset == "Users" else (events, None)
        if table is not None:
            matched = table.filter(pa.array(matches(e.any_of, table, schema)))
            chosen[e.action] |= set(matched.column("USER_ID").to_pylist())
    included = any(e.action == "INCLUDE" for e in bound.expressions)
    return (chosen["INCLUDE"] if included else set(users.column("USER_ID").to_pylist())) - chosen["EXCLUDE"]


def _most_recent(events: pa.Table, limit: int) -> pa.Table:
    """Each user's ``limit`` most recent events of each event type (types compared case-insensitively)."""
    kind = pc.utf8_lower(events.column("EVENT_TYPE"))
    keyed = events.append_column("_TYPE", kind)
    order = pc.sort_indices(keyed, [("USER_ID", "ascending"), ("_TYPE", "ascending"),
                                    ("TIMESTAMP", "descending")])
    keyed = keyed.take(order)
    if not keyed.num_rows:
        return events
    users = keyed.column("USER_ID").combine_chunks().dictionary_encode().indices.to_numpy()
    types = keyed.column("_TYPE").combine_chunks().dictionary_encode().indices.to_numpy()
    new_group = np.ones(len(users), dtype=bool)
    new_group[1:] = (users[1:] != users[:-1]) | (types[1:] != types[:-1])
    starts = np.flatnonzero(new_group)
    rank = np.arange(len(users)) - np.repeat(starts, np.diff(np.append(starts, len(users))))
    return keyed.filter(pa.array(rank < limit)).drop_columns(["_TYPE"])


def _grouped(table: pa.Table, column: str, name: str, kind: pa.DataType) -> pa.Table:
    """USER_ID, ``name``: the distinct values of ``column`` per user (numpy on dictionary codes: Arrow's
    group_by costs ~6 ms a call, too much for one user's request)."""
    users = table.column("USER_ID").combine_chunks().dictionary_encode()
    values = table.column(column).combine_chunks().cast(kind).dictionary_encode()
    width = max(len(values.dictionary), 1)
    pairs = np.unique(users.indices.to_numpy().astype(np.int64) * width + values.indices.to_numpy())
    user_codes, value_codes = np.divmod(pairs, width)
    offsets = np.searchsorted(user_codes, np.arange(len(users.dictionary) + 1)).astype(np.int32)
    return pa.table({"USER_ID": users.dictionary,
                     name: pa.ListArray.from_arrays(pa.array(offsets), values.dictionary.take(pa.array(value_codes)))})


@dataclass
class RowFilters:
    """What :func:`apply_filter` needs per row of a score block: ``binding`` (index into the plans),
    ``valid`` (rows to filter; failed ones are skipped), ``related`` (a related-items row) with its
    ``query`` item ID, and the row's user lists: ``include`` / ``exclude`` as (row, catalog index) pairs and
    ``applies`` (a set of rule indexes per row)."""

    binding: np.ndarray
    valid: np.ndarray
    related: np.ndarray
    query: np.ndarray
    include: tuple[np.ndarray, np.ndarray]
    exclude: tuple[np.ndarray, np.ndarray]
    applies: list[frozenset]

    @classmethod
    def unfiltered(cls, rows: int) -> "RowFilters":
        """Rows of user requests with no per-user lists (binding 0)."""
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        return cls(np.zeros(rows, np.int64), np.ones(rows, bool), np.zeros(rows, bool),
                   np.full(rows, None, dtype=object), empty, empty, [frozenset()] * rows)


def apply_filter(plans: list[FilterPlan], scores: np.ndarray, rows: RowFilters) -> None:
    """Set every item the filter does not allow to minus infinity, group by group: rows sharing a binding,
    a kind, the conditional rules that apply (and, for CurrentItem rules, the query item) share one mask."""
    groups: dict[tuple, list[int]] = {}
    for r in np.flatnonzero(rows.valid):
        plan = plans[rows.binding[r]]
        query = rows.query[r] if rows.related[r] and any(x.current_item for x in plan.rules) else None
        groups.setdefault((int(rows.binding[r]), bool(rows.related[r]), rows.applies[r], query), []).append(r)
    n = scores.shape[1]
    for (b, related, applying, query), members in groups.items():
        plan, members = plans[b], np.array(members)
        if related:
            rules = [r for r in plan.rules if not r.per_user and r.condition is None]
        else:
            rules = [r for r in plan.rules if not r.current_item and (r.condition is None or r.condition in applying)]
        if not rules:
            continue
        masks = [(r, r.mask if r.mask is not None else
                  plan.current_item_mask(r, query) if r.current_item else None) for r in rules]
        includes = [(r, m) for r, m in masks if r.action == "INCLUDE"]
        if not includes:  # exclusions only: the excluded cells directly, no (rows, items) mask and copy
            excluded = [m for _, m in masks if m is not None]
            if excluded:
                scores[np.ix_(members, np.flatnonzero(np.logical_or.reduce(excluded)))] = -np.inf
            if any(r.per_user for r in rules):
                entry_rows, entry_items = rows.exclude
                mine = np.isin(entry_rows, members)
                scores[entry_rows[mine], entry_items[mine]] = -np.inf
            continue
        allowed = np.empty((len(members), n), dtype=bool)
        allowed[:] = np.logical_or.reduce([m for _, m in includes if m is not None] or [np.zeros(n, bool)])
        if any(r.per_user for r, _ in includes):
            _scatter(allowed, members, *rows.include, True)
        for r, m in masks:
            if r.action == "EXCLUDE" and m is not None:
                allowed &= ~m
        if any(r.action == "EXCLUDE" and r.per_user for r in rules):
            _scatter(allowed, members, *rows.exclude, False)
        block = scores[members]
        block[~allowed] = -np.inf
        scores[members] = block


def _scatter(target: np.ndarray, members: np.ndarray, entry_rows: np.ndarray, entry_items: np.ndarray,
             value: bool) -> None:
    """target[i, item] = value for the entries whose row is members[i]."""
    position = np.full(int(max(members.max(initial=0), entry_rows.max(initial=0))) + 1, -1)
    position[members] = np.arange(len(members))
    local = position[entry_rows] if len(entry_rows) else np.zeros(0, dtype=np.int64)
    ok = local >= 0
    target[local[ok], entry_items[ok]] = value
