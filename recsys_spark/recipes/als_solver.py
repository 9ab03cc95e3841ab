"""The hot kernel of implicit ALS: solve one side's factors for a block of rows, vectorised over the block.

For every row u (a user, or an item in the other half-step) with observed columns i and confidences c_ui:

    (YtY + reg I + sum_i (c_ui - 1) y_i y_i^T) x_u = sum_i c_ui y_i

solved by a few conjugate-gradient steps warm-started from the previous x_u (as the ``implicit`` library
does), so each step costs O(observations x factors) instead of O(observations x factors^2) for the
normal-equation build of a direct solve. Shapes: ``indptr`` (rows + 1), ``cols`` / ``conf`` (one entry
per observation, grouped by row), ``x0`` (rows, k), ``other`` (columns, k), ``gram`` (k, k) = YtY + reg I.

>>> x = solve_block(indptr, cols, conf, x0, item_factors, gram(item_factors, 0.1), steps=3)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np


def gram(factors: np.ndarray, regularization: float) -> np.ndarray:
    """YtY + reg I (k, k), accumulated in float64, returned as float32."""
    f = factors.astype(np.float64)
    return (f.T @ f + regularization * np.eye(f.shape[1])).astype(np.float32)


CHUNK_OBSERVATIONS = 4096  # rows solved together: their gathered factors (4096 x 64 float32 = 1 MB) stay in L2


def solve_block(indptr: np.ndarray, cols: np.ndarray, conf: np.ndarray, x0: np.ndarray, other: np.ndarray,
                gram_reg: np.ndarray, steps: int) -> np.ndarray:
    """New factors (rows, k) float32 for the block's rows; rows without observations get zeros.

    The rows are solved in consecutive chunks of about :data:`CHUNK_OBSERVATIONS` observations: every row's
    system is independent, and a chunk's temporaries stay in cache (3-5x faster than one pass over the
    whole block, measured on 100,000 x 20,000 with rank 64)."""
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
    gathered = y[cols]                                   # (observations, k)
    # Row sums of per-observation weights times gathered factors: one CSR product, its values reused.
    per_row = sparse.csr_matrix((conf.copy(), np.arange(n), np.concatenate([[0], np.cumsum(lengths)])),
                                shape=(len(lengths), n))
    b = per_row @ gathered                               # sum_i c_ui y_i
    excess = conf - 1.0

    def times_a(p: np.ndarray) -> np.ndarray:
        # (c_ui - 1) (y_i . p_u) for every observation, then summed back onto its row times y_i.
        np.multiply(np.einsum("nk,nk->n", gathered, np.repeat(p, lengths, axis=0)), excess, out=per_row.data)
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
