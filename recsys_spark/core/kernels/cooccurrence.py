"""Item-item co-occurrence similarity in one process (scipy): the ``sims`` recipe's local engine, the same
arithmetic as its Spark self-join (:mod:`recsys_spark.recipes.sims`).

>>> import numpy as np
>>> from recsys_spark.core.settings import SimsSettings
>>> users, items = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 0, 1, 1, 2])
>>> i, j, s = top_similar(users, items, 3, SimsSettings(min_cointeraction_count=1))
>>> [(int(a), int(b), round(float(c), 3)) for a, b, c in zip(i, j, s)]
[(0, 1, 0.816), (1, 0, 0.816), (1, 2, 0.577), (2, 1, 0.577)]
"""

from __future__ import annotations

import numpy as np

from recsys_spark.core.settings import SimsSettings


def recent_pairs(users: np.ndarray, items: np.ndarray, newest: np.ndarray, limit: int) -> np.ndarray:
    """A mask of the (user, item) pairs among each user's ``limit`` most recent (newest first, then
    ascending item): the history that enters the co-occurrence counts."""
    order = np.lexsort((items, -newest, users))
    sorted_users = users[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_users, sorted_users)  # within each user's run
    keep = np.zeros(len(order), dtype=bool)
    keep[order[rank < limit]] = True
    return keep


def cooccurrences(users: np.ndarray) -> int:
    """How many (user, item, item) triples the counts visit: sum over users of history length squared."""
    lengths = np.bincount(users).astype(np.int64)
    return int((lengths * lengths).sum())


def top_similar(users: np.ndarray, items: np.ndarray, n_items: int,
                s: SimsSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item, neighbour, similarity float32) of each item's ``s.similar_items`` best neighbours, by item,
    best first (ties: lower neighbour first). ``users`` (codes 0..n-1) and ``items``: the distinct
    (user, item) pairs of the histories (:func:`recent_pairs`)."""
    from scipy import sparse

    x = sparse.csr_matrix((np.ones(len(users), dtype=np.int64), (users, items)),
                          shape=(int(users.max(initial=-1)) + 1, n_items))
    per_item = np.asarray(x.sum(axis=0)).ravel()
    counts = (x.T @ x).tocoo()
    ok = (counts.row != counts.col) & (counts.data >= s.min_cointeraction_count)
    i, j, c = counts.row[ok].astype(np.int64), counts.col[ok].astype(np.int64), counts.data[ok]
    score = c / np.power((per_item[i] * per_item[j]).astype(np.float64), s.popularity_discount_factor)
    order = np.lexsort((j, -score, i))
    i, j, score = i[order], j[order], score[order]
    best = np.arange(len(i)) - np.searchsorted(i, i) < s.similar_items  # rank within each item's run
    return i[best], j[best], score[best].astype(np.float32)
