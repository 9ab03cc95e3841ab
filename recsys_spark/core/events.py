"""A solution's event settings applied to interactions: which events it trains on and their weights. The
Spark snapshot (:mod:`recsys_spark.solutions.snapshot`) applies the same rules as Column expressions; the
real-time server applies these to one user's events, and a test checks both give the batch job's answers.

>>> import numpy as np
>>> event_weights(np.array(["view", "buy", "rate"], dtype=object), np.array([1.0, 1.0, 0.5]),
...               {"view": 1.0, "buy": 3.0, "rate": 2.0}, value_threshold=1.0).tolist()
[1.0, 3.0, 0.0]
"""

from __future__ import annotations

import numpy as np


def event_weights(event_types: np.ndarray, values: np.ndarray | None, types: dict[str, float] | None,
                  value_threshold: float | None) -> np.ndarray:
    """Each event's weight (float32), 0 for events the solution leaves out: below ``value_threshold`` (or
    without a value when there is one), of a type not in ``types`` (None: every type, weight 1), or weighted
    0 there."""
    n = len(event_types)
    if types is None:
        weights = np.ones(n, dtype=np.float32)
    else:
        weights = np.array([types.get(t, 0.0) for t in event_types], dtype=np.float32).reshape(n)
    if value_threshold is not None:
        if values is None:
            return np.zeros(n, dtype=np.float32)
        v = np.asarray(values, dtype=np.float64)
        weights[~(v >= value_threshold)] = 0.0  # a missing (NaN) value never passes
    return weights
