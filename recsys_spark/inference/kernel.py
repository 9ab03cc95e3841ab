"""The batch scoring kernel: one Arrow batch of requests in, their recommendations out.

A block of requests is scored as one (rows, items) float32 matrix by the model (user rows through their
stored or folded-in factors or their history, related-items rows through the query item), then every
exclusion is applied as minus infinity before the top-k selection, so each row still gets ``k`` items when
enough pass: items the user has seen (``exclude_seen``), the query item itself, and the filter. Filters
arrive compiled per binding of their parameters (:class:`BindingPlan`): item-level rules as boolean masks
over the catalog, per-user and per-query-item rules as item lists on each row. Rows are grouped by
(binding, conditional rules that apply) so a mask is built once per group, never once per user.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.inference.topk import top_k
from recsys_spark.recipes.base import Model, UserBlock

OUTPUT_SCHEMA = "LINE_ID bigint, INPUT string, ITEMS array<string>, SCORES array<float>, ERROR string, NOTE string"
INPUT_COLUMNS = ["LINE_ID", "INPUT", "USER_ID", "QUERY_ITEM", "ITEM_LIST", "ERROR", "BINDING_ID", "F_INCLUDE",
                 "F_EXCLUDE", "F_APPLIES", "H_ITEMS", "H_WEIGHTS", "H_TIMES"]

BLOCK_ROWS = 256  # 256 users x 20,000 items of float32 (20 MB) stay in cache between product and selection
UNKNOWN_USER = "user not known to the model: popular items"
UNKNOWN_ITEM = "item not known to the model: popular items"


@dataclass
class RulePlan:
    """One compiled filter expression: INCLUDE/EXCLUDE, an item mask (item-level rules) or the row's own
    lists (``per_row``), the index of its IF condition (None: unconditional), ``related``: a CurrentItem rule."""

    action: str
    mask: np.ndarray | None = None
    per_row: bool = False
    condition: int | None = None
    related: bool = False


@dataclass
class BindingPlan:
    """The rules of one binding of the filter's parameters (or the error that binding produced)."""

    rules: list[RulePlan] = field(default_factory=list)
    error: str | None = None


@dataclass
class KernelSettings:
    k: int
    exclude_seen: bool
    plans: list[BindingPlan]
    has_factors: bool
    ranking: bool


def no_filter() -> list:
    """The filter columns of a job without a filter."""
    return [F.lit(0).alias("BINDING_ID"), F.lit(None).cast("array<string>").alias("F_INCLUDE"),
            F.lit(None).cast("array<string>").alias("F_EXCLUDE"), F.lit(None).cast("array<int>").alias("F_APPLIES")]


def score_frame(frame: DataFrame, model: Model, settings: KernelSettings, done=None) -> DataFrame:
    """The kernel over every partition of ``frame`` (INPUT_COLUMNS, + FACTORS and KNOWN when
    ``settings.has_factors``) -> OUTPUT_SCHEMA; ``done`` (an accumulator, optional) counts scored lines."""
    shared = frame.sparkSession.sparkContext.broadcast((model, settings))

    def score(batches):
        m, s = shared.value
        for batch in reblock(batches, BLOCK_ROWS):
            yield score_batch(m, batch, s)
            if done is not None:
                done.add(batch.num_rows)

    columns = INPUT_COLUMNS + (["FACTORS", "KNOWN"] if settings.has_factors else [])
    return frame.select(*columns).mapInArrow(score, OUTPUT_SCHEMA)


def reblock(batches, rows: int):
    """Arrow batches re-cut to at most ``rows`` rows each."""
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def _flat(column: pa.ListArray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values) of a list column; null lists are empty."""
    column = column.fill_null([]) if column.null_count else column
    offsets = column.offsets.to_numpy().astype(np.int64)
    values = column.values.to_numpy(zero_copy_only=False).astype(dtype)
    return offsets - offsets[0], values[offsets[0]:offsets[-1]]


def block_from_arrow(batch: pa.RecordBatch, has_factors: bool) -> UserBlock:
    indptr, items = _flat(batch.column("H_ITEMS"), np.int64)
    _, weights = _flat(batch.column("H_WEIGHTS"), np.float32)
    _, times = _flat(batch.column("H_TIMES"), np.int64)
    block = UserBlock(indptr, items, weights, times)
    if has_factors:
        known = batch.column("KNOWN").fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
        f_offsets, f_values = _flat(batch.column("FACTORS"), np.float32)
        dims = np.diff(f_offsets)
        k = int(dims.max(initial=0))
        factors = np.zeros((batch.num_rows, k), dtype=np.float32)
        full = np.flatnonzero(dims == k) if k else np.array([], dtype=np.int64)
        factors[full] = f_values[f_offsets[full][:, None] + np.arange(k)]
        block.factors, block.known = factors, known & (dims == k) & (k > 0)
    return block


def _catalog_index(model: Model) -> pd.Index:
    index = getattr(model, "_catalog_index", None)
    if index is None:
        index = pd.Index(model.item_ids)
        model._catalog_index = index
    return index


def _catalog_ids(model: Model) -> pa.Array:
    """The catalog's item IDs as an Arrow array (taking from it avoids a Python string per result)."""
    ids = getattr(model, "_catalog_ids", None)
    if ids is None:
        ids = pa.array(model.item_ids, pa.string())
        model._catalog_ids = ids
    return ids


def _lists(column: pa.Array, model: Model) -> tuple[np.ndarray, np.ndarray]:
    """(row of each entry, catalog index of each entry) of a list<string> column; unknown items dropped."""
    column = column.fill_null([]) if column.null_count else column
    offsets = column.offsets.to_numpy()
    values = column.values.to_numpy(zero_copy_only=False)[offsets[0]:offsets[-1]]
    rows = np.repeat(np.arange(len(column)), np.diff(offsets))
    idx = _catalog_index(model).get_indexer(values) if len(values) else np.zeros(0, dtype=np.int64)
    return rows[idx >= 0], idx[idx >= 0]


def score_batch(model: Model, batch: pa.RecordBatch, s: KernelSettings) -> pa.RecordBatch:
    rows, n = batch.num_rows, model.n_items
    errors = np.array(batch.column("ERROR").to_pylist(), dtype=object)
    notes = np.full(rows, None, dtype=object)
    query = batch.column("QUERY_ITEM")
    binding = batch.column("BINDING_ID").fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if s.plans:  # a binding that failed to compile (e.g. a missing INCLUDE parameter) fails its lines
        binding_errors = np.array([p.error for p in s.plans], dtype=object)[binding]
        errors = np.where(errors == None, binding_errors, errors)  # noqa: E711 - elementwise
    valid = errors == None  # noqa: E711 - elementwise
    related = valid & ~np.asarray(query.is_null().to_numpy(zero_copy_only=False))
    users = valid & ~related

    fallback = np.zeros(rows, dtype=bool)
    block = block_from_arrow(batch, s.has_factors)
    has_history = np.diff(block.indptr) > 0
    known_user = has_history if block.known is None else has_history | block.known
    if users.all() and known_user.all():  # the common case: score the block in place, no copy
        scores = model.score_users(block)
    else:
        scores = np.full((rows, n), -np.inf, dtype=np.float32)
        if (users & known_user).any():
            scores[users & known_user] = model.score_users(block.select(users & known_user))
    if related.any():
        q = _catalog_index(model).get_indexer(query.fill_null("").to_numpy(zero_copy_only=False))
        known = related & (q >= 0)
        if known.any():
            scores[known] = model.score_items(q[known])
            scores[np.flatnonzero(known), q[known]] = -np.inf
        unknown = related & (q < 0)
        scores[unknown] = model.popularity
        fallback |= unknown
        notes[unknown] = UNKNOWN_ITEM
    if users.any():
        cold = users & ~known_user
        scores[cold] = model.popularity
        fallback |= cold
        notes[cold] = UNKNOWN_USER
        if s.exclude_seen and not s.ranking and len(block.items):
            entry_rows = block.row_ids()
            ok = users[entry_rows] & (block.items >= 0) & (block.items < n)
            scores[entry_rows[ok], block.items[ok]] = -np.inf
    if s.plans:
        _apply_filter(model, batch, s.plans, scores, binding, valid, related)
    k = s.k
    if s.ranking:
        allowed = np.zeros((rows, n), dtype=bool)
        list_rows, list_items = _lists(batch.column("ITEM_LIST"), model)
        allowed[list_rows, list_items] = True
        scores[~allowed] = -np.inf
        k = max(1, max((len(x) for x in batch.column("ITEM_LIST").to_pylist() if x), default=1))
    idx, vals = top_k(scores, k)
    keep = np.isfinite(vals) & valid[:, None]
    if s.ranking:
        items, values = _ranked_lists(model, batch.column("ITEM_LIST").to_pylist(), idx, vals, keep, fallback)
    else:
        offsets = pa.array(np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32))
        items = pa.ListArray.from_arrays(offsets, _catalog_ids(model).take(pa.array(idx[keep])))
        values = pa.ListArray.from_arrays(offsets, pa.array(vals[keep], pa.float32()),
                                          mask=pa.array(fallback | ~valid))
    return pa.record_batch([batch.column("LINE_ID"), batch.column("INPUT"), items, values,
                            pa.array(errors.tolist(), pa.string()), pa.array(notes.tolist(), pa.string())],
                           names=["LINE_ID", "INPUT", "ITEMS", "SCORES", "ERROR", "NOTE"])


def _ranked_lists(model, item_lists, idx, vals, keep, fallback):
    """Personalized ranking: the scored items of each list, best first, then its items unknown to the model
    without a score, as the service does."""
    index = _catalog_index(model)
    items, values = [], []
    for r, listed in enumerate(item_lists):
        ids = model.item_ids[idx[r][keep[r]]].tolist()
        scores = None if fallback[r] else vals[r][keep[r]].tolist()
        unknown = [i for i, pos in zip(listed or [], index.get_indexer(listed or [])) if pos < 0]
        items.append(ids + unknown)
        values.append(None if scores is None else scores + [None] * len(unknown))
    return pa.array(items, pa.list_(pa.string())), pa.array(values, pa.list_(pa.float32()))


def _apply_filter(model: Model, batch: pa.RecordBatch, plans: list[BindingPlan], scores: np.ndarray,
                  binding: np.ndarray, valid: np.ndarray, related: np.ndarray) -> None:
    """Set every item the filter does not allow to minus infinity, group by group."""
    applies = [set(x or ()) for x in batch.column("F_APPLIES").to_pylist()]
    include_rows, include_items = _lists(batch.column("F_INCLUDE"), model)
    exclude_rows, exclude_items = _lists(batch.column("F_EXCLUDE"), model)
    keys = [(int(binding[r]), bool(related[r]), frozenset(applies[r])) for r in range(len(binding))]
    groups: dict[tuple, list[int]] = {}
    for r in np.flatnonzero(valid):
        groups.setdefault(keys[r], []).append(r)
    n = model.n_items
    for (b, is_related, applying), members in groups.items():
        rows = np.array(members)
        rules = [rule for rule in plans[b].rules
                 if (rule.related if is_related else not rule.related)
                 and (rule.condition is None or rule.condition in applying)
                 and not (is_related and (rule.per_row or rule.condition is not None))]
        if not rules:
            continue
        includes = [r for r in rules if r.action == "INCLUDE"]
        allowed = np.ones((len(rows), n), dtype=bool)
        if includes:
            base = np.zeros(n, dtype=bool)
            for rule in includes:
                if rule.mask is not None:
                    base |= rule.mask
            allowed[:] = base
            if any(r.per_row or r.related for r in includes):
                _scatter(allowed, rows, include_rows, include_items, True)
        for rule in rules:
            if rule.action == "EXCLUDE" and rule.mask is not None:
                allowed &= ~rule.mask
        if any(r.action == "EXCLUDE" and (r.per_row or r.related) for r in rules):
            _scatter(allowed, rows, exclude_rows, exclude_items, False)
        sub = scores[rows]
        sub[~allowed] = -np.inf
        scores[rows] = sub


def _scatter(target: np.ndarray, rows: np.ndarray, entry_rows: np.ndarray, entry_items: np.ndarray, value) -> None:
    """target[i, item] = value for the entries whose row is rows[i]."""
    position = np.full(int(max(rows.max(initial=0), entry_rows.max(initial=0))) + 1, -1)
    position[rows] = np.arange(len(rows))
    local = position[entry_rows] if len(entry_rows) else np.zeros(0, dtype=np.int64)
    ok = local >= 0
    target[local[ok], entry_items[ok]] = value
