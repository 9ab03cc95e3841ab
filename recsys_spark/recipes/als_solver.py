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


def solve_block(indptr: np.ndarray, cols: np.ndarray, conf: np.ndarray, x0: np.ndarray, other: np.ndarray,
                gram_reg: np.ndarray, steps: int) -> np.ndarray:
    """New factors (rows, k) float32 for the block's rows; rows without observations get zeros."""
    from scipy import sparse

    rows = len(indptr) - 1
    n_other = other.shape[0]
    y = other.astype(np.float32, copy=False)
    x = x0.astype(np.float32, copy=True)
    row_of = np.repeat(np.arange(rows), np.diff(indptr))
    gathered = y[cols]                                   # (observations, k)
    conf = conf.astype(np.float32, copy=False)
    b = sparse.csr_matrix((conf, cols, indptr), shape=(rows, n_other)) @ y  # sum_i c_ui y_i

    def times_a(p: np.ndarray) -> np.ndarray:
        # (c_ui - 1) (y_i . p_u) for every observation, then summed back onto its row times y_i.
        dots = np.einsum("nk,nk->n", gathered, p[row_of]) * (conf - 1.0)
        return p @ gram_reg + sparse.csr_matrix((dots, cols, indptr), shape=(rows, n_other)) @ y

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
    empty = np.diff(indptr) == 0
    x[empty] = 0.0
    return x.astype(np.float32)
