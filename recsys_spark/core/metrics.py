"""Ranking metrics of recommendation lists against held-out truth, in numpy: one implementation for the
evaluation on the driver and inside Spark tasks (each task sums its rows, the driver adds the sums).

Binary relevance; per user: precision@k (hits in the top k / k), recall@k (/ truth size), NDCG@k
(1 / log2(1 + position), over the ideal for min(truth size, k) hits), MAP over the whole list as the
recommenders project defines it (divided by the truth size), and MRR (1 / position of the first hit).

>>> import pyarrow as pa
>>> sums = ranking_sums(pa.array([["x", "r1", "y", "z", "r2"]]), pa.array([["r1", "r2"]]), (5,))
>>> m = ranking_means(sums)
>>> round(m["ndcg_at_5"], 4), m["precision_at_5"], m["map"]
(0.6241, 0.4, 0.45)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _flat(lists: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(row of each entry, position of each entry within its row, the entries) of a list column."""
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    lists = lists.fill_null([]) if lists.null_count else lists
    offsets = lists.offsets.to_numpy()
    rows = np.repeat(np.arange(len(lists)), np.diff(offsets))
    return rows, np.arange(len(rows)) + offsets[0] - offsets[:-1][rows], lists.values[offsets[0]:offsets[-1]]


def ranking_sums(items: pa.Array, truth: pa.Array, ks: tuple[int, ...]) -> dict[str, float]:
    """The per-user metrics summed over aligned rows: ``items`` (list<string>, best first; null or empty:
    no recommendations, every metric 0) and ``truth`` (list<string>, distinct). ``users``: the rows."""
    rows, position, values = _flat(items)
    truth_rows, _, truth_values = _flat(truth)
    sizes = np.bincount(truth_rows, minlength=len(truth)).astype(np.float64)
    # One code per distinct ID over both sides, then a hit is a (row, code) pair present in the truth.
    both = pa.chunked_array([values.cast(pa.string()), truth_values.cast(pa.string())]).combine_chunks()
    codes = pc.dictionary_encode(both).indices.to_numpy().astype(np.int64)
    width = len(codes) + 1
    hit = np.isin(rows * width + codes[:len(values)], truth_rows * width + codes[len(values):])
    out: dict[str, float] = {"users": float(len(truth))}
    has_truth = sizes > 0
    for k in ks:
        top = hit & (position < k)
        hits = np.bincount(rows[top], minlength=len(truth))
        dcg = np.bincount(rows[top], weights=1 / np.log2(position[top] + 2), minlength=len(truth))
        ideal = np.cumsum(1 / np.log2(np.arange(k) + 2))[np.minimum(sizes, k).astype(np.int64) - 1]
        out[f"precision_at_{k}"] = float(hits.sum() / k)
        out[f"recall_at_{k}"] = float((hits[has_truth] / sizes[has_truth]).sum())
        out[f"ndcg_at_{k}"] = float((dcg[has_truth] / ideal[has_truth]).sum())
    # MAP: at each hit, the hits so far over the position; MRR: the first hit's 1 / position.
    before = np.cumsum(hit) - hit
    hits_so_far = before - before[np.arange(len(rows)) - position] + 1
    precision_at_hit = np.bincount(rows[hit], weights=hits_so_far[hit] / (position[hit] + 1), minlength=len(truth))
    out["map"] = float((precision_at_hit[has_truth] / sizes[has_truth]).sum())
    first = np.full(len(truth), np.inf)
    np.minimum.at(first, rows[hit], position[hit] + 1)
    out["mrr"] = float((1 / first).sum())
    return out


def ranking_means(sums: dict[str, float]) -> dict[str, float]:
    """Means over users of :func:`ranking_sums` (added over batches first); ``users`` stays a count."""
    users = sums["users"]
    return {name: (value if name == "users" else value / users if users else 0.0) for name, value in sums.items()}
