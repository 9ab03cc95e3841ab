"""A small interaction data set with a planted structure: two user groups, each preferring its own items."""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY = 86400


def planted(users: int = 80, items: int = 40, per_user: int = 12, seed: int = 0) -> pd.DataFrame:
    """USER_ID (``a3`` in group a, ``b5`` in group b), ITEM_ID (``A7`` group a's items, ``B2`` b's), TIMESTAMP,
    EVENT_TYPE (``view``, every fourth one ``buy``), EVENT_VALUE. 90% of a user's events are on their
    group's items; within a group, popularity falls with the item number."""
    rng = np.random.default_rng(seed)
    rows = []
    half = items // 2
    weights = 1.0 / np.arange(1, half + 1)
    weights /= weights.sum()
    for u in range(users):
        group = "ab"[u % 2]
        own, other = group.upper(), "BA"["ab".index(group)]
        chosen = rng.choice(half, size=per_user, replace=False, p=weights)
        for n, i in enumerate(chosen):
            group_of_item = own if rng.random() < 0.9 else other
            rows.append((f"{group}{u}", f"{group_of_item}{i}", 1_700_000_000 + (u * per_user + n) * 600,
                         "buy" if n % 4 == 3 else "view", float(rng.integers(1, 6))))
    return pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"])


def as_csv(frame: pd.DataFrame, path) -> str:
    frame.to_csv(path, index=False)
    return str(path)
