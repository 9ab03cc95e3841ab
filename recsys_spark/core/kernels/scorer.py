"""The block scorer: requests with their users' histories and stored factors in, recommendations out.

:func:`score_partition` takes one Arrow table of mixed rows (kind :data:`REQUEST`, :data:`ENTRY` history
rows, :data:`FACTORS` stored user vectors, :data:`USER` users to score), as a Spark task receives them
after one shuffle by user, groups them by user in numpy (histories as CSR) and scores the requests in
blocks of :data:`BLOCK_ROWS` with :func:`score_batch`: one (rows, items) float32 matrix by the model (user
rows through their stored or folded-in factors or their history, related-items rows through the query
item), every exclusion applied as minus infinity before the top-k selection so each row still gets ``k``
items when enough pass: items the user has seen (``exclude_seen``), the query item itself, and the filter
(:func:`~recsys_spark.core.filters.plan.apply_filter`). Output rows follow
:data:`~recsys_spark.core.kernels.lines.OUTPUT_SCHEMA`.

>>> import numpy as np, pyarrow as pa
>>> from recsys_spark.core.models.ranked import RankedItemsModel
>>> model = RankedItemsModel(np.array(["a", "b", "c"], dtype=object), np.array([3.0, 2.0, 1.0]))
>>> rows = pa.table({"KIND": pa.array([ENTRY, USER], pa.int8()), "USER_ID": ["u1", "u2"],
...                  "ITEM_IDX": pa.array([0, None], pa.int32())})
>>> [b.column("ITEMS").to_pylist() for b in score_partition(model, rows, KernelSettings(2), every_user=True)]
[[['b', 'c'], ['a', 'b']]]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_spark.core.filters.plan import FilterPlan, RowFilters, apply_filter
from recsys_spark.core.kernels.lines import OUTPUT_SCHEMA, json_strings
from recsys_spark.core.kernels.topk import top_k
from recsys_spark.core.models.base import Model, UserBlock

#: Request rows: the line, its user or query item, the ranking list, an error already known, and the filter
#: binding (index into the plans) with the user's filter lists (see :class:`RowFilters`).
REQUEST_COLUMNS = ["LINE_ID", "INPUT", "USER_ID", "QUERY_ITEM", "ITEM_LIST", "ERROR", "BINDING_ID", "F_INCLUDE",
                   "F_EXCLUDE", "F_APPLIES"]
REQUEST, ENTRY, FACTORS, USER = 0, 1, 2, 3  # the kinds of the scorer's input rows

BLOCK_ROWS = 256  # 256 users x 20,000 items of float32 (20 MB) stay in cache between product and selection
UNKNOWN_USER = "user not known to the model: popular items"
UNKNOWN_ITEM = "item not known to the model: popular items"


@dataclass
class KernelSettings:
    """``k`` results per row; ``exclude_seen``: drop the user's history items; ``plans``: the filter per
    binding (empty: no filter); ``ranking``: rank each row's ITEM_LIST instead of the catalog;
    ``fresh_after``: users with an interaction newer than this (epoch seconds, the model's newest) are
    folded in from their history instead of using their stored factors."""

    k: int
    exclude_seen: bool = True
    plans: list[FilterPlan] = field(default_factory=list)
    ranking: bool = False
    fresh_after: int | None = None


def _column(table: pa.Table, name: str, rows: np.ndarray, dtype) -> np.ndarray:
    """``table[name]`` at ``rows`` (no nulls there) as a numpy array."""
    if name not in table.column_names:
        return np.zeros(len(rows), dtype=dtype)
    return table.column(name).take(pa.array(rows)).to_numpy().astype(dtype, copy=False)


def score_partition(model: Model, table: pa.Table, s: KernelSettings, every_user: bool):
    """Group one partition's rows (see the module docstring) by user and yield OUTPUT_SCHEMA batches.
    ``every_user``: score each user with history or a USER row (no REQUEST rows)."""
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
                 else user_requests(names.take(pa.array(users))))
        yield score_batch(model, batch, block, s)


def _take(indptr: np.ndarray, rows: np.ndarray, items, weights, times) -> UserBlock:
    """The histories of ``rows`` (user codes; -1: no history) as a UserBlock."""
    lengths = np.where(rows >= 0, indptr[rows + 1] - indptr[np.maximum(rows, 0)], 0)
    block_ptr = np.concatenate([[0], np.cumsum(lengths)])
    at = np.repeat(indptr[np.maximum(rows, 0)] - block_ptr[:-1], lengths) + np.arange(block_ptr[-1])
    return UserBlock(block_ptr, items[at], weights[at], times[at])


def user_requests(user_ids: pa.Array) -> pa.RecordBatch:
    """``{"userId": ...}`` request rows (REQUEST_COLUMNS) for ``user_ids``, without a filter."""
    n = len(user_ids)
    inputs = pc.binary_join_element_wise('{"userId":', json_strings(user_ids), "}", "")
    nulls = {c: pa.nulls(n, t) for c, t in (("LINE_ID", pa.int64()), ("QUERY_ITEM", pa.string()),
                                          ("ITEM_LIST", pa.list_(pa.string())), ("ERROR", pa.string()),
                                          ("F_INCLUDE", pa.list_(pa.string())), ("F_EXCLUDE", pa.list_(pa.string())),
                                          ("F_APPLIES", pa.list_(pa.int32())))}
    return pa.record_batch({**nulls, "INPUT": inputs, "USER_ID": user_ids,
                            "BINDING_ID": pa.array(np.zeros(n, np.int32))}).select(REQUEST_COLUMNS)


def _lists(column: pa.Array, model: Model) -> tuple[np.ndarray, np.ndarray]:
    """(row of each entry, catalog index of each entry) of a list<string> column; unknown items dropped."""
    column = column.fill_null([]) if column.null_count else column
    offsets = column.offsets.to_numpy()
    values = column.values.to_numpy(zero_copy_only=False)[offsets[0]:offsets[-1]]
    rows = np.repeat(np.arange(len(column)), np.diff(offsets))
    idx = model.positions(values) if len(values) else np.zeros(0, dtype=np.int64)
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
    query_ids = query.fill_null("").to_numpy(zero_copy_only=False)
    if related.any():
        q = model.positions(query_ids)
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
        applies = [frozenset(x or ()) for x in batch.column("F_APPLIES").to_pylist()]
        apply_filter(s.plans, scores, RowFilters(binding, valid, related, query_ids,
                                                 _lists(batch.column("F_INCLUDE"), model),
                                                 _lists(batch.column("F_EXCLUDE"), model), applies))
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
        items = pa.ListArray.from_arrays(offsets, model.catalog_ids.take(pa.array(idx[keep])))
        values = pa.ListArray.from_arrays(offsets, pa.array(vals[keep], pa.float32()),
                                          mask=pa.array(fallback | ~valid))
    return pa.record_batch([batch.column("LINE_ID"), batch.column("INPUT"), batch.column("USER_ID"), items, values,
                            pa.array(errors.tolist(), pa.string()), pa.array(notes.tolist(), pa.string())],
                           schema=OUTPUT_SCHEMA)


def _ranked_lists(model, item_lists, idx, vals, keep, fallback):
    """Personalized ranking: the scored items of each list, best first, then its items unknown to the model
    without a score, as the service does."""
    items, values = [], []
    for r, listed in enumerate(item_lists):
        ids = model.item_ids[idx[r][keep[r]]].tolist()
        scores = None if fallback[r] else vals[r][keep[r]].tolist()
        unknown = [i for i, pos in zip(listed or [], model.positions(listed or [])) if pos < 0]
        items.append(ids + unknown)
        values.append(None if scores is None else scores + [None] * len(unknown))
    return pa.array(items, pa.list_(pa.string())), pa.array(values, pa.list_(pa.float32()))
