"""A bound filter (no parameters left) compiled against the warehouse tables into what a scorer applies.

Each expression becomes a :class:`Rule`:

* item conditions (``Items.F ...``) -> the set of item IDs they select, computed once with Column
  predicates over the items table (values bound with ``lit``/``isin``, never spliced into SQL text);
  ``IN`` on a categorical field matches when any of its ``|``-separated values is in the list;
* interaction conditions (``Interactions.EVENT_TYPE ...``) -> per user, the items of their most recent
  ``recent_per_type`` interactions of each event type that pass (event types compared case-insensitively;
  ``"*"`` is any type);
* ``IF CurrentUser...`` -> the users the expression applies to (the others ignore it);
* conditions on ``CurrentItem.F`` (related-items queries) -> per query item, the items that pass when
  ``CurrentItem`` is that item.

For a user, the allowed items are (union of the applicable INCLUDE rules, or every item when none applies)
minus (union of the applicable EXCLUDE rules). :meth:`FilterPlan.user_lists` gives the per-user part as one
row per user (include and exclude item lists, which conditional rules apply) for the scorer's partitions;
:meth:`FilterPlan.allowed` evaluates everything for given users, for tests and small jobs.

>>> plan = compile_filter(bind(config.parsed_filter("not-yet-bought"), {}), warehouse)   # doctest: +SKIP
>>> plan.allowed(["u1"])["u1"] <= set(catalog)                                           # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.errors import UserError
from recsys_spark.filters.syntax import LIST_OPS, Condition, CurrentItem, Expression, Filter, Number, Param
from recsys_spark.schema import NUMERIC_TYPES, DatasetSchema

DEFAULT_RECENT_PER_TYPE = 100


@dataclass
class Rule:
    """One expression, compiled. Exactly one of ``items`` (item-level) and ``user_items`` (per user) is set;
    ``users`` (the users an IF-conditioned expression applies to) is None when it applies to everyone."""

    action: str
    text: str
    items: frozenset[str] | None = None
    user_items: DataFrame | None = None  # USER_ID, ITEM_ID
    users: DataFrame | None = None  # USER_ID
    related_items: DataFrame | None = None  # QUERY_ITEM_ID, ITEM_ID: CurrentItem rules of related-items queries


@dataclass
class FilterPlan:
    rules: list[Rule]

    def user_lists(self) -> DataFrame | None:
        """Per user: ``include``/``exclude`` item lists from interaction rules, and ``applies`` (indexes of the
        IF-conditioned rules that apply to them). None when every rule is item-level and unconditional."""
        parts = []
        for k, rule in enumerate(self.rules):
            if rule.user_items is not None:
                column = "include" if rule.action == "INCLUDE" else "exclude"
                frame = rule.user_items
                if rule.users is not None:
                    frame = frame.join(rule.users, "USER_ID", "left_semi")
                parts.append(frame.select("USER_ID", F.col("ITEM_ID").alias(column)))
            if rule.users is not None:
                parts.append(rule.users.select("USER_ID", F.lit(k).alias("applies")))
        return _collected(parts, "USER_ID", {"include": "string", "exclude": "string", "applies": "int"})

    def related_lists(self) -> DataFrame | None:
        """Per query item of a related-items batch: ``include``/``exclude`` lists from CurrentItem rules.
        None when no rule uses CurrentItem."""
        parts = [r.related_items.select("QUERY_ITEM_ID", F.col("ITEM_ID").alias(
            "include" if r.action == "INCLUDE" else "exclude")) for r in self.rules if r.related_items is not None]
        return _collected(parts, "QUERY_ITEM_ID", {"include": "string", "exclude": "string"})

    def allowed_related(self, query_ids: list[str], catalog: list[str]) -> dict[str, set[str]]:
        """The allowed items for each related-items query item (a reference evaluation for small data).
        A related-items query has no user, so user-level rules do not apply."""
        lists = self.related_lists()
        rows = {r.QUERY_ITEM_ID: r for r in lists.collect()} if lists else {}
        rules = [r for r in self.rules if r.user_items is None and r.users is None]
        return {q: _combine(rules, rows.get(q), catalog) for q in query_ids}

    def allowed(self, user_ids: list[str], catalog: list[str]) -> dict[str, set[str]]:
        """The allowed items of each user, by the combination rules (a reference evaluation for small data)."""
        lists = self.user_lists()
        rows = {r.USER_ID: r for r in lists.where(F.col("USER_ID").isin(user_ids)).collect()} if lists else {}
        result = {}
        for user in user_ids:
            applies = set(rows[user].applies) if user in rows else set()
            rules = [r for k, r in enumerate(self.rules)
                     if (r.users is None or k in applies) and r.related_items is None]
            result[user] = _combine(rules, rows.get(user), catalog)
        return result


def _collected(parts: list[DataFrame], key: str, columns: dict[str, str]) -> DataFrame | None:
    """One row per ``key`` with a set per column of ``columns`` (name -> type), from frames holding ``key``
    and some of those columns; None when there are no frames."""
    if not parts:
        return None
    rows = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
    for name, kind in columns.items():
        if name not in rows.columns:
            rows = rows.withColumn(name, F.lit(None).cast(kind))
    return rows.groupBy(key).agg(*[F.collect_set(c).alias(c) for c in columns])


def _combine(rules: list[Rule], row, catalog: list[str]) -> set[str]:
    """(union of the INCLUDE rules' items, or the catalog when none) minus the union of the EXCLUDE rules'
    items; per-row rules take their items from ``row``'s include/exclude lists."""
    include, exclude = set(), set()
    for rule in rules:
        per_row = set(row.include if rule.action == "INCLUDE" else row.exclude) if row else set()
        (include if rule.action == "INCLUDE" else exclude).update(rule.items if rule.items is not None else per_row)
    return (include if any(r.action == "INCLUDE" for r in rules) else set(catalog)) - exclude


def compile_filter(filter_: Filter, warehouse, recent_per_type: int = DEFAULT_RECENT_PER_TYPE,
                   query_items: DataFrame | None = None) -> FilterPlan:
    """Compile a bound ItemID filter against ``warehouse``'s latest tables; ``query_items`` (ITEM_ID) are the
    items of related-items queries, needed by CurrentItem conditions."""
    if filter_.parameters:
        raise UserError(f"bind values to {', '.join('$' + p for p in sorted(filter_.parameters))} before compiling")
    rules = []
    for e in filter_.expressions:
        if e.target != "ItemID":
            raise UserError(f"`{e}` selects users: apply it with select_users")
        if any(isinstance(c.value, CurrentItem) for c in e.conditions):
            if query_items is None or e.only_if:
                raise UserError(f"`{e}`: CurrentItem conditions apply to related-items queries (itemId), "
                                "without IF CurrentUser conditions")
            rules.append(Rule(e.action, str(e), related_items=_related(warehouse, e, query_items)))
            continue
        users = None
        if e.only_if:
            schema = warehouse.schema("users")
            users = warehouse.read("users").where(_any_of([e.only_if], schema)).select("USER_ID")
        if e.dataset == "Items":
            schema = warehouse.schema("items")
            matched = warehouse.read("items").where(_any_of(e.any_of, schema)).select("ITEM_ID").collect()
            rules.append(Rule(e.action, str(e), items=frozenset(r.ITEM_ID for r in matched), users=users))
        else:
            rules.append(Rule(e.action, str(e), user_items=_recent_items(warehouse, e, recent_per_type),
                              users=users))
    return FilterPlan(rules)


def select_users(filter_: Filter, warehouse) -> DataFrame:
    """The USER_IDs a bound user-segment filter (``INCLUDE|EXCLUDE UserID ...``) selects: users matching the
    INCLUDE expressions (every user when there is none) minus those matching an EXCLUDE expression; an
    Interactions condition matches users with an interaction of those event types."""
    if filter_.parameters:
        raise UserError(f"bind values to {', '.join('$' + p for p in sorted(filter_.parameters))} first")
    everyone = warehouse.read("users").select("USER_ID")
    chosen = {"INCLUDE": [], "EXCLUDE": []}
    for e in filter_.expressions:
        if e.target != "UserID":
            raise UserError(f"`{e}` selects items, not users")
        if e.dataset == "Users":
            users = warehouse.read("users").where(_any_of(e.any_of, warehouse.schema("users"))).select("USER_ID")
        else:
            users = warehouse.read("interactions").where(_any_of(e.any_of, None)).select("USER_ID").distinct()
        chosen[e.action].append(users)
    union = lambda frames: reduce(lambda a, b: a.unionByName(b), frames)  # noqa: E731
    selected = union(chosen["INCLUDE"]).distinct() if chosen["INCLUDE"] else everyone
    return selected.join(union(chosen["EXCLUDE"]), "USER_ID", "left_anti") if chosen["EXCLUDE"] else selected


def _related(warehouse, e: Expression, query_items: DataFrame) -> DataFrame:
    """(QUERY_ITEM_ID, ITEM_ID) pairs passing the expression with CurrentItem = the query item: a join of the
    few query items (broadcast) with the catalog on the expression's condition."""
    items = warehouse.read("items")
    current = items.join(query_items.select("ITEM_ID").distinct(), "ITEM_ID", "left_semi")
    condition = _any_of(e.any_of, warehouse.schema("items"), candidate="c", current="q")
    pairs = items.alias("c").join(F.broadcast(current.alias("q")), condition, "inner")
    return pairs.select(F.col("q.ITEM_ID").alias("QUERY_ITEM_ID"), F.col("c.ITEM_ID").alias("ITEM_ID"))


def _recent_items(warehouse, e: Expression, recent_per_type: int) -> DataFrame:
    # The cap is per event type and the conditions only test the event type, so selecting the types first
    # gives the same rows and ranks far fewer of them.
    events = warehouse.read("interactions").where(_any_of(e.any_of, None))
    newest = Window.partitionBy("USER_ID", F.lower("EVENT_TYPE")).orderBy(F.col("TIMESTAMP").desc())
    recent = events.withColumn("_n", F.row_number().over(newest)).where(F.col("_n") <= recent_per_type)
    return recent.select("USER_ID", "ITEM_ID").distinct()


def _any_of(groups, schema: DatasetSchema | None, candidate: str | None = None, current: str | None = None) -> Column:
    return reduce(lambda a, b: a | b, (reduce(lambda a, b: a & b, (_predicate(c, schema, candidate, current)
                                                                    for c in group)) for group in groups))


def _predicate(c: Condition, schema: DatasetSchema | None, candidate: str | None = None,
               current: str | None = None) -> Column:
    """One condition as a null-safe Column predicate (a missing value never matches IN or a comparison);
    with ``candidate``/``current`` table aliases, CurrentItem.F is ``current``'s column F."""
    if isinstance(c.value, Param):
        raise UserError(f"${c.value.name} has no value")
    column = F.col(f"{candidate}.`{c.field}`" if candidate else f"`{c.field}`")
    if isinstance(c.value, CurrentItem):
        other = F.col(f"{current}.`{c.value.field}`")
        field = schema.field(c.field)
        if c.op in LIST_OPS and field.categorical:
            matched = F.arrays_overlap(F.split(column, r"\|"), F.split(other, r"\|"))
        elif c.op in LIST_OPS:
            matched = column == other
        else:
            matched = {"=": column == other, "<": column < other, "<=": column <= other, ">": column > other,
                       ">=": column >= other}[c.op]
        matched = F.coalesce(matched, F.lit(False))
        return ~matched if c.op == "NOT IN" else matched
    if c.dataset == "Interactions":  # EVENT_TYPE: case-insensitive, "*" is any type
        values = [v.lower() for v in c.value.values]
        matched = F.lit(True) if "*" in values else F.lower(column).isin(values)
    elif c.op in LIST_OPS:
        field = schema.field(c.field)
        values = c.value.values
        if field.base_type in NUMERIC_TYPES:
            matched = column.isin([float(v) for v in values])
        elif field.categorical:
            matched = F.arrays_overlap(F.split(column, r"\|"), F.array(*[F.lit(v) for v in values]))
        else:
            matched = column.isin(list(values))
    else:
        bound = F.lit(c.value.value if isinstance(c.value, Number) else None)
        matched = {"=": column == bound, "<": column < bound, "<=": column <= bound, ">": column > bound,
                   ">=": column >= bound}[c.op]
    matched = F.coalesce(matched, F.lit(False))
    return ~matched if c.op == "NOT IN" else matched




class FilterPlans:
    """The compiled plans of one filter, one per distinct binding of its parameters, each computed once
    (a batch with a million lines but five distinct ``filterValues`` compiles five plans).

    >>> plans = FilterPlans(config.parsed_filter("under-price"), warehouse)          # doctest: +SKIP
    >>> plans.for_values({"MAX_PRICE": "20"}) is plans.for_values({"MAX_PRICE": " 20 "})   # doctest: +SKIP
    True
    """

    def __init__(self, filter_: Filter, warehouse, recent_per_type: int = DEFAULT_RECENT_PER_TYPE):
        self.filter, self.warehouse, self.recent_per_type = filter_, warehouse, recent_per_type
        self._plans: dict[Filter, FilterPlan] = {}

    @classmethod
    def named(cls, name: str, warehouse) -> FilterPlans:
        """The plans of the config's filter ``name``, with its ``recent_per_event_type`` setting."""
        config = warehouse.config
        return cls(config.parsed_filter(name), warehouse, config.filter(name).recent_per_event_type)

    def for_values(self, filter_values) -> FilterPlan:
        from recsys_spark.filters.binding import bind

        bound = bind(self.filter, filter_values)
        if bound not in self._plans:
            self._plans[bound] = compile_filter(bound, self.warehouse, self.recent_per_type)
        return self._plans[bound]

    def __len__(self) -> int:
        return len(self._plans)
