"""The hot kernel of implicit ALS: solve one side's factors for a block of rows, vectorised over the block.

For every row u (a user, or an item in the other half-step) with observed columns i and confidences c_ui:

    (YtY + reg I + sum_i (c_ui - 1) y_i y_i^T) x_u = sum_i c_ui y_i

solved by a few conjugate-gradient steps warm-started from the previous x_u (as the ``implicit`` library
does), so each step costs O(observations x factors) instead of O(observations x factors^2) for the
normal-equation build of a direct solve. Shapes: ``indptr`` (rows + 1), ``cols`` / ``conf`` (one entry
per observation, grouped by row), ``x0`` (rows, k), ``other`` (columns, k), ``gram`` (k, k) = YtY + reg I.

>>> x = solve_block(indptr, cols, conf, x0, item_factors, gram(item_factors, 0.1), steps=3)  # doctest: +SKIP

:func:`solve_in_threads` runs the same solve on slices of the rows in a thread pool (the driver-local
engine): numpy and scipy release the GIL in their loops, and chunks are large enough that the Python
between them stays a small share.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np


def gram(factors: np.ndarray, regularization: float) -> np.ndarray:
    """YtY + reg I (k, k), accumulated in float64, returned as float32."""
    return regularized(cross(factors), regularization)


def cross(factors: np.ndarray) -> np.ndarray:
    """YtY (k, k) in float64: summed over blocks of rows, then :func:`regularized`, it is :func:`gram`."""
    f = factors.astype(np.float64)
    return f.T @ f


def regularized(cross_product: np.ndarray, regularization: float) -> np.ndarray:
    """YtY + reg I as float32, from :func:`cross`."""
    return (cross_product + regularization * np.eye(cross_product.shape[0])).astype(np.float32)


# Rows solved together. Their gathered factors (16,384 x 64 float32 = 4 MB) stay in cache, and the ~20
# numpy / scipy calls per CG step cost little next to the arithmetic. Smaller chunks leave more of the time
# in those calls' Python, which holds the GIL: 10 iterations at 100,000 x 20,000, rank 64, on two threads
# took 6.0 s with 4,096 and 4.2 s with 16,384 (one thread: ~6.7 s with either).
CHUNK_OBSERVATIONS = 16384


def solve_block(indptr: np.ndarray, cols: np.ndarray, conf: np.ndarray, x0: np.ndarray, other: np.ndarray,
                gram_reg: np.ndarray, steps: int) -> np.ndarray:
    """New factors (rows, k) float32 for the block's rows; rows without observations get zeros.

    The rows are solved in consecutive chunks of about :data:`CHUNK_OBSERVATIONS` observations: every row's
    system is independent, and a chunk's temporaries stay in cache (3-5x faster than one pass over the
    whole block, measured on 100,000 x 20,000 with rank 64). ``x0`` is not modified."""
    x = x0.astype(np.float32, copy=True)
    lengths = np.diff(indptr)
    x[lengths == 0] = 0.0
    rows = np.flatnonzero(lengths)
    if not len(rows):
        return x
    y = other.astype(np.float32, copy=False)
    conf = conf.astype(np.float32, copy=False)
    ends = np.cumsum(lengths[rows])
    cuts = np.unique(np.searchsorted(ends, np.arange(CHUNK_OBSERVATIONS, ends[-1], CHUNK_OBSERVATIONS)) + 1)
    for chunk in np.split(rows, cuts[cuts < len(rows)]):
        lo, hi = indptr[chunk[0]], indptr[chunk[-1] + 1]  # empty rows in between hold no observations
        x[chunk] = _conjugate_gradient(x[chunk], lengths[chunk], cols[lo:hi], conf[lo:hi], y, gram_reg, steps)
    return x


def _conjugate_gradient(x: np.ndarray, lengths: np.ndarray, cols: np.ndarray, conf: np.ndarray, y: np.ndarray,
                        gram_reg: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` CG steps for rows with ``lengths`` observations each (all > 0), from ``x``."""
    from scipy import sparse

    n = len(cols)
    gathered = np.take(y, cols, axis=0)                  # (observations, k); take is ~2x faster than y[cols]
    owner = np.repeat(np.arange(len(lengths)), lengths)  # each observation's row in the chunk
    # Row sums of per-observation weights times gathered factors: one CSR product, its values reused.
    per_row = sparse.csr_matrix((conf.copy(), np.arange(n), np.concatenate([[0], np.cumsum(lengths)])),
                                shape=(len(lengths), n))
    b = per_row @ gathered                               # sum_i c_ui y_i
    excess = conf - 1.0

    def times_a(p: np.ndarray) -> np.ndarray:
        # (c_ui - 1) (y_i . p_u) for every observation, then summed back onto its row times y_i.
        np.multiply(np.einsum("nk,nk->n", gathered, np.take(p, owner, axis=0)), excess, out=per_row.data)
        return p @ gram_reg + per_row @ gathered
    r = b - times_a(x)
    p = r.copy()
    rs = np.einsum("rk,rk->r", r, r)
    for _ in range(steps):
        ap = times_a(p)
        denom = np.einsum("rk,rk->r", p, ap)
        step = np.divide(rs, denom, out=np.zeros_like(rs), where=denom > 1e-20)
        x += step[:, None] * p
        r -= step[:, None] * ap
        rs_new = np.einsum("rk,rk->r", r, r)
        beta = np.divide(rs_new, rs, out=np.zeros_like(rs), where=rs > 1e-20)
        p = r + beta[:, None] * p
        rs = rs_new
    return x


def solve_in_threads(indptr: np.ndarray, cols: np.ndarray, conf: np.ndarray, x0: np.ndarray, other: np.ndarray,
                     gram_reg: np.ndarray, steps: int, threads: int) -> np.ndarray:
    """:func:`solve_block` over all rows with ``threads`` threads, each on slices of about equal
    observations (four per thread, so an uneven slice does not leave a thread idle). Same result.

    >>> x = solve_in_threads(indptr, cols, conf, x0, item_factors, gram_reg, steps=3, threads=4)  # doctest: +SKIP
    """
    from threadpoolctl import threadpool_limits

    pieces = max(1, threads * 4)
    bounds = np.unique(np.searchsorted(indptr, np.linspace(0, indptr[-1], pieces + 1)[1:-1]))
    bounds = np.concatenate([[0], bounds[(bounds > 0) & (bounds < len(x0))], [len(x0)]])
    out = np.empty_like(x0, dtype=np.float32)

    def solve(lo: int, hi: int) -> None:
        a, b = indptr[lo], indptr[hi]
        out[lo:hi] = solve_block(indptr[lo:hi + 1] - a, cols[a:b], conf[a:b], x0[lo:hi], other, gram_reg, steps)

    # One BLAS thread per solving thread: BLAS's own threads would only compete with them.
    with threadpool_limits(1, "blas"), ThreadPoolExecutor(threads) as pool:
        list(pool.map(solve, bounds[:-1], bounds[1:]))
    return out
