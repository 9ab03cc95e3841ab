"""The batch scoring kernel: requests, histories and stored factors in, recommendations out.

Everything the kernel reads arrives as rows of one DataFrame shuffled once by user (:func:`score_frame`):
request rows, one row per history entry (USER_ID, ITEM_IDX, WEIGHT, TIMESTAMP) and one row per stored user
factor vector. Each partition groups them by user in numpy (histories as CSR) instead of Spark building
per-user arrays and joining them, then scores its requests in blocks of :data:`BLOCK_ROWS`: one
(rows, items) float32 matrix by the model (user rows through their stored or folded-in factors or their
history, related-items rows through the query item), every exclusion applied as minus infinity before the
top-k selection so each row still gets ``k`` items when enough pass: items the user has seen
(``exclude_seen``), the query item itself, and the filter. Filters arrive compiled per binding of their
parameters (:class:`BindingPlan`): item-level rules as boolean masks over the catalog, per-user and
per-query-item rules as item lists on each row. Rows are grouped by (binding, conditional rules that
apply) so a mask is built once per group, never once per user. The output is either records
(:data:`OUTPUT_SCHEMA`) or the service's JSON lines, built from Arrow arrays (:func:`json_lines`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import reduce

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.inference.topk import top_k
from recsys_spark.recipes.base import Model, UserBlock

OUTPUT_SCHEMA = ("LINE_ID bigint, INPUT string, USER_ID string, ITEMS array<string>, SCORES array<float>, "
                 "ERROR string, NOTE string")
LINES_SCHEMA = "value string, FAILED boolean"
REQUEST_COLUMNS = ["LINE_ID", "INPUT", "USER_ID", "QUERY_ITEM", "ITEM_LIST", "ERROR", "BINDING_ID", "F_INCLUDE",
                   "F_EXCLUDE", "F_APPLIES"]
ENTRY_COLUMNS = ["USER_ID", "ITEM_IDX", "WEIGHT", "TIMESTAMP"]
REQUEST, ENTRY, FACTORS, USER = 0, 1, 2, 3  # the kinds of the kernel's input rows

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
    """``k`` results per row; ``exclude_seen``: drop the user's history items; ``plans``: the filter per
    binding (empty: no filter); ``ranking``: rank each row's ITEM_LIST instead of the catalog;
    ``fresh_after``: users with an interaction newer than this (epoch seconds, the model's newest) are
    folded in from their history instead of using their stored factors."""

    k: int
    exclude_seen: bool = True
    plans: list[BindingPlan] = field(default_factory=list)
    ranking: bool = False
    fresh_after: int | None = None


def scoring_partitions(spark, history_rows: int) -> int:
    """Scoring tasks: two per core (the kernel is the costly part; more tasks only add per-task cost), and
    enough that one task's partition, held in memory while grouped by user, stays near 2 million history
    rows."""
    return max(spark.sparkContext.defaultParallelism * 2, -(-history_rows // 2_000_000))


def no_filter() -> list:
    """The filter columns of a job without a filter."""
    return [F.lit(0).alias("BINDING_ID"), F.lit(None).cast("array<string>").alias("F_INCLUDE"),
            F.lit(None).cast("array<string>").alias("F_EXCLUDE"), F.lit(None).cast("array<int>").alias("F_APPLIES")]


def score_frame(model: Model, settings: KernelSettings, partitions: int, *, requests: DataFrame | None = None,
                entries: DataFrame | None = None, factors: DataFrame | None = None, users: DataFrame | None = None,
                lines: bool = False, done=None) -> DataFrame:
    """Score requests with ``model`` in ``partitions`` tasks.

    ``requests``: REQUEST_COLUMNS rows, one output row each; None scores every user in ``entries`` and
    ``users`` (USER_ID), the batch job's ``all_users`` without a filter. ``entries``: history rows
    (ENTRY_COLUMNS; ITEM_IDX into the model's catalog). ``factors``: stored user factors (USER_ID,
    FACTORS array<float>). Returns OUTPUT_SCHEMA rows, or with ``lines`` the service's JSON line per row
    (LINES_SCHEMA); ``done`` (an accumulator, optional) counts scored rows.

    >>> score_frame(model, KernelSettings(25), 8, entries=history_entries(interactions, model)).columns  # doctest: +SKIP
    ['LINE_ID', 'INPUT', 'USER_ID', 'ITEMS', 'SCORES', 'ERROR', 'NOTE']
    """
    every_user = requests is None
    parts = [] if every_user else [requests.select(F.lit(REQUEST).alias("KIND"), *REQUEST_COLUMNS)]
    if entries is not None:
        parts.append(entries.select(F.lit(ENTRY).alias("KIND"), "USER_ID", F.col("ITEM_IDX").cast("int"),
                                    F.col("WEIGHT").cast("float"), F.col("TIMESTAMP").cast("long")))
    if factors is not None:
        parts.append(factors.select(F.lit(FACTORS).alias("KIND"), "USER_ID", F.col("FACTORS").cast("array<float>")))
    if users is not None and every_user:
        parts.append(users.select(F.lit(USER).alias("KIND"), "USER_ID"))
    if not parts:
        raise ValueError("score_frame needs requests, entries or users")
    union = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
    for name, kind in (("LINE_ID", "bigint"), ("ITEM_IDX", "int"), ("FACTORS", "array<float>")):
        if name not in union.columns:
            union = union.withColumn(name, F.lit(None).cast(kind))
    # Empty arrays, not nulls, in the rows a column does not apply to: Spark's Arrow writer is several times
    # slower on null arrays (measured: 14 s against 3.6 s for 2 million history rows beside the factors).
    union = union.select(*[F.coalesce(c, F.array().cast(t)).alias(c) if t.startswith("array") else c
                           for c, t in union.dtypes])
    # Related-items requests have no user: spread them by line.
    key = F.coalesce(F.col("USER_ID"), F.col("LINE_ID").cast("string"))
    shared = union.sparkSession.sparkContext.broadcast((model, settings))

    def score(batches):
        m, s = shared.value
        batches = list(batches)
        if not batches:
            return
        for out in score_partition(m, pa.Table.from_batches(batches), s, every_user):
            yield json_lines(out) if lines else out
            if done is not None:
                done.add(out.num_rows)

    return union.repartition(partitions, key).mapInArrow(score, LINES_SCHEMA if lines else OUTPUT_SCHEMA)


def _column(table: pa.Table, name: str, rows: np.ndarray, dtype) -> np.ndarray:
    """``table[name]`` at ``rows`` (no nulls there) as a numpy array."""
    if name not in table.column_names:
        return np.zeros(len(rows), dtype=dtype)
    return table.column(name).take(pa.array(rows)).to_numpy().astype(dtype, copy=False)


def score_partition(model: Model, table: pa.Table, s: KernelSettings, every_user: bool):
    """Group one partition's rows (see :func:`score_frame`) by user and yield OUTPUT_SCHEMA batches."""
    kind = table.column("KIND").to_numpy()
    encoded = table.column("USER_ID").combine_chunks().dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy().astype(np.int64)
    names = encoded.dictionary
    n_users = len(names)
    # Histories as CSR over the partition's users, entries of unknown items dropped.
    has_user = codes >= 0
    e = np.flatnonzero((kind == ENTRY) & has_user)
    items = _column(table, "ITEM_IDX", e, np.int64)
    ok = (items >= 0) & (items < model.n_items)
    e, items = e[ok], items[ok]
    order = np.argsort(codes[e], kind="stable")
    e, items = e[order], items[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(codes[e], minlength=n_users))])
    weights, times = _column(table, "WEIGHT", e, np.float32), _column(table, "TIMESTAMP", e, np.int64)
    stored = known = None
    f = np.flatnonzero((kind == FACTORS) & has_user)
    if len(f):
        values = table.column("FACTORS").take(pa.array(f)).combine_chunks()
        lengths = np.diff(values.offsets.to_numpy())
        rank = int(lengths.max(initial=0))
        full = f[lengths == rank]
        flat = values.filter(pa.array(lengths == rank)).flatten().to_numpy()
        stored = np.zeros((n_users, rank), dtype=np.float32)
        stored[codes[full]] = flat.reshape(len(full), rank)
        known = np.zeros(n_users, dtype=bool)
        known[codes[full]] = rank > 0
        if s.fresh_after is not None and len(times):
            starts = indptr[:-1][np.diff(indptr) > 0]
            newest = np.zeros(n_users, dtype=np.int64)
            newest[np.diff(indptr) > 0] = np.maximum.reduceat(times, starts)
            known &= newest <= s.fresh_after
    if every_user:
        present = np.zeros(n_users, dtype=bool)
        present[codes[((kind == ENTRY) | (kind == USER)) & has_user]] = True
        rows = np.flatnonzero(present)
        requests = None
    else:
        r = np.flatnonzero(kind == REQUEST)
        rows = codes[r]
        requests = table.select(REQUEST_COLUMNS).take(pa.array(r)).combine_chunks().to_batches()
        requests = requests[0] if requests else None
    for start in range(0, len(rows), BLOCK_ROWS):
        users = rows[start:start + BLOCK_ROWS]
        block = _take(indptr, users, items, weights, times)
        if stored is not None:
            block.factors = np.where((users >= 0)[:, None], stored[users], 0)
            block.known = (users >= 0) & known[users]
        batch = (requests.slice(start, BLOCK_ROWS) if requests is not None
                 else _user_requests(names.take(pa.array(users))))
        yield score_batch(model, batch, block, s)


def _take(indptr: np.ndarray, rows: np.ndarray, items, weights, times) -> UserBlock:
    """The histories of ``rows`` (user codes; -1: no history) as a UserBlock."""
    lengths = np.where(rows >= 0, indptr[rows + 1] - indptr[np.maximum(rows, 0)], 0)
    block_ptr = np.concatenate([[0], np.cumsum(lengths)])
    at = np.repeat(indptr[np.maximum(rows, 0)] - block_ptr[:-1], lengths) + np.arange(block_ptr[-1])
    return UserBlock(block_ptr, items[at], weights[at], times[at])


def _user_requests(user_ids: pa.Array) -> pa.RecordBatch:
    """``{"userId": ...}`` request rows for ``user_ids`` (every-user scoring)."""
    n = len(user_ids)
    inputs = pc.binary_join_element_wise('{"userId":', json_strings(user_ids), "}", "")
    nulls = {c: pa.nulls(n, t) for c, t in (("LINE_ID", pa.int64()), ("QUERY_ITEM", pa.string()),
                                          ("ITEM_LIST", pa.list_(pa.string())), ("ERROR", pa.string()),
                                          ("F_INCLUDE", pa.list_(pa.string())), ("F_EXCLUDE", pa.list_(pa.string())),
                                          ("F_APPLIES", pa.list_(pa.int32())))}
    return pa.record_batch({**nulls, "INPUT": inputs, "USER_ID": user_ids,
                            "BINDING_ID": pa.array(np.zeros(n, np.int32))})


_NEEDS_ESCAPE = r'["\\\x00-\x1f]'


def json_strings(values: pa.Array) -> pa.Array:
    """Each string as a JSON string literal (quoted, escaped); nulls stay null."""
    if not pc.any(pc.match_substring_regex(values, _NEEDS_ESCAPE)).as_py():
        return pc.binary_join_element_wise('"', values, '"', "")
    return pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values.to_pylist()],
                    pa.string())


def json_lines(out: pa.RecordBatch) -> pa.RecordBatch:
    """OUTPUT_SCHEMA rows as the service's lines: {"input": ..., "output": {"recommendedItems": [...],
    "scores": [...] or null}, "error": ...} (+ "note" when there is one), and FAILED (an error)."""
    items, scores = out.column("ITEMS"), out.column("SCORES")
    quoted = pa.ListArray.from_arrays(items.offsets, json_strings(items.values))
    numbers = pa.ListArray.from_arrays(scores.offsets, pc.cast(scores.values, pa.string()).fill_null("null"),
                                       mask=scores.is_null())
    joined = pc.binary_join_element_wise("[", pc.binary_join(numbers, ","), "]", "").fill_null("null")
    errors, notes = out.column("ERROR"), out.column("NOTE")
    error_text = json_strings(errors).fill_null("null")
    note_text = pc.binary_join_element_wise(',"note":', json_strings(notes), "").fill_null("")
    value = pc.binary_join_element_wise('{"input":', out.column("INPUT"), ',"output":{"recommendedItems":[',
                                        pc.binary_join(quoted, ",").fill_null(""), '],"scores":', joined,
                                        '},"error":', error_text, note_text, "}", "")
    return pa.record_batch([value, errors.is_valid()], names=["value", "FAILED"])


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


def score_batch(model: Model, batch: pa.RecordBatch, block: UserBlock, s: KernelSettings) -> pa.RecordBatch:
    """One block of requests (REQUEST_COLUMNS) with their users' histories and factors -> OUTPUT_SCHEMA."""
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
    return pa.record_batch([batch.column("LINE_ID"), batch.column("INPUT"), batch.column("USER_ID"), items, values,
                            pa.array(errors.tolist(), pa.string()), pa.array(notes.tolist(), pa.string())],
                           names=["LINE_ID", "INPUT", "USER_ID", "ITEMS", "SCORES", "ERROR", "NOTE"])


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
