"""The top-k selection kernel: the ``k`` best columns of every row of a score block.

A full ``argpartition`` over every column is the bottleneck of batch scoring (DESIGN.md section 11), so the
selection runs in two levels: the maximum of each fixed-width chunk of columns, the ``k`` chunks with the
largest maxima (together they hold every top-``k`` element), then the top ``k`` of those ``k x width``
values. Ties are broken by the lower column index at both levels, so results are deterministic and equal
to a full stable sort.

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
    values, columns = scores, None
    # Two pruning levels: 80-wide chunks of the catalog, then 8-wide chunks of the surviving candidates.
    for width in (chunk, 8):
        values, columns = _prune(values, columns, k, width)
    if columns is None:
        columns = np.broadcast_to(np.arange(n), (rows, n))
    return _best(values, columns, k)


def _prune(values: np.ndarray, columns: np.ndarray | None, k: int, width: int):
    """The candidates of the ``k`` chunks (of ``width`` columns) with the largest maxima, in column order;
    unchanged when that would not prune."""
    rows, n = values.shape
    chunks = -(-n // width)
    if chunks <= 2 * k:
        return values, columns
    if chunks * width != n:
        padded = np.full((rows, chunks * width), -np.inf, dtype=values.dtype)
        padded[:, :n] = values
        values = padded
        if columns is not None:
            wide = np.zeros((rows, chunks * width), dtype=columns.dtype)
            wide[:, :n] = columns
            columns = wide
    blocks = values.reshape(rows, chunks, width)
    best = _first_k(blocks.max(axis=2), k)                               # (rows, k) chunk numbers, ascending
    picked = (np.arange(rows)[:, None], best)
    values = blocks[picked].reshape(rows, k * width)
    if columns is None:  # the catalog itself: chunk c holds columns c * width ...
        columns = (best[:, :, None] * width + np.arange(width)).reshape(rows, k * width)
    else:
        columns = columns.reshape(rows, chunks, width)[picked].reshape(rows, k * width)
    return values, columns


def _first_k(values: np.ndarray, k: int) -> np.ndarray:
    """Per row, the positions of the ``k`` largest values (the lower position first among equal values),
    in ascending position order: everything above the k-th largest, then enough of those equal to it."""
    kth = -np.partition(-values, k - 1, axis=1)[:, k - 1:k]
    above = values > kth
    equal = values == kth
    needed = k - above.sum(axis=1, keepdims=True)
    chosen = above | (equal & (np.cumsum(equal, axis=1) <= needed))
    return np.nonzero(chosen)[1].reshape(values.shape[0], k)


def _best(values: np.ndarray, columns: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of ``values`` per row, best first; ``columns`` (ascending per row) are what to report."""
    if values.shape[1] > k:
        keep = _first_k(values, k)
        values = np.take_along_axis(values, keep, axis=1)
        columns = np.take_along_axis(columns, keep, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(columns, order, axis=1), np.take_along_axis(values, order, axis=1)
