"""The top-k selection kernel: the ``k`` best columns of every row of a score block.

A full ``argpartition`` over every column is the bottleneck of batch scoring (DESIGN.md section 11), so the
selection runs in two levels: the maximum of each fixed-width chunk of columns, the ``k`` chunks with the
largest maxima (together they hold every top-``k`` element), then the top ``k`` of those ``k x width``
values. Ties are broken by the lower column index, so results are deterministic.

>>> import numpy as np
>>> top_k(np.array([[0.1, 0.9, 0.5, 0.9]], dtype=np.float32), 2)
(array([[1, 3]]), array([[0.9, 0.9]], dtype=float32))
"""

from __future__ import annotations

import numpy as np

CHUNK = 80


def top_k(scores: np.ndarray, k: int, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """``scores``: (rows, items) float32, excluded items set to ``-inf`` -> (indexes, values), each
    (rows, min(k, items)), best first. Positions whose value is ``-inf`` hold excluded items: callers cut
    each row at its first ``-inf``."""
    rows, n = scores.shape
    k = min(k, n)
    if k == 0 or rows == 0:
        return np.zeros((rows, k), dtype=np.int64), np.zeros((rows, k), dtype=scores.dtype)
    chunks = -(-n // chunk)
    if chunks <= 2 * k:  # small catalogs: the chunk level would not prune anything
        return _select(scores, np.broadcast_to(np.arange(n), (rows, n)), k)
    padded = scores
    if chunks * chunk != n:
        padded = np.full((rows, chunks * chunk), -np.inf, dtype=scores.dtype)
        padded[:, :n] = scores
    maxima = padded.reshape(rows, chunks, chunk).max(axis=2)
    # The k chunks with the largest maxima, lower chunk first among equal maxima (stable sort).
    best = np.sort(np.argsort(-maxima, axis=1, kind="stable")[:, :k], axis=1)
    columns = (best[:, :, None] * chunk + np.arange(chunk)).reshape(rows, k * chunk)
    return _select(np.take_along_axis(padded, columns, axis=1), columns, k)


def _select(values: np.ndarray, columns: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of ``values`` per row; ``columns`` (ascending per row) are the indexes to report."""
    if values.shape[1] > 4 * k:
        # Keep every value >= the k-th largest (ties included), then order those few exactly.
        kth = -np.partition(-values, k - 1, axis=1)[:, k - 1:k]
        keep = values >= kth
        width = int(keep.sum(axis=1).max())
        order = np.argsort(~keep, axis=1, kind="stable")[:, :width]  # kept positions, in column order
        values = np.take_along_axis(values, order, axis=1)
        columns = np.take_along_axis(columns, order, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(columns, order, axis=1), np.take_along_axis(values, order, axis=1)
