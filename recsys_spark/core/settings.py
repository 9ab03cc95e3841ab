"""Every recipe's settings with their defaults, checked when the config is loaded (no Spark needed).

A solution's ``settings:`` mapping is validated against its recipe's class here; unknown keys are errors
that list the valid ones (each recipe's class is named by its entry in :mod:`recsys_spark.core.registry`).
A solution version's manifest records the full settings, defaults filled in::

    >>> SimsSettings.model_validate({"min_cointeraction_count": 2}).popularity_discount_factor
    0.5
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Share = Annotated[float, Field(ge=0, le=1)]
Positive = Annotated[float, Field(gt=0)]


class RecipeSettings(BaseModel):
    """Settings every recipe has.

    ``min_interactions`` (1000) and ``min_users_with_two`` (25): training refuses smaller data, as the
    managed service does. ``exclude_seen`` (true): items a user already interacted with are not
    recommended to them. ``seed`` (42): random initialisation and evaluation splits.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_interactions: Annotated[int, Field(ge=1)] = 1000
    min_users_with_two: Annotated[int, Field(ge=1)] = 25
    exclude_seen: bool = True
    seed: int = 42


class FactorSettings(RecipeSettings):
    """Implicit-feedback ALS (Hu, Koren & Volinsky): confidence = 1 + ``alpha`` x (sum of the user's event
    weights on the item). Defaults chosen on a MovieLens-100k validation split (scripts/tune_defaults.py).

    ``factors`` (32), ``iterations`` (15), ``regularization`` (60, added to each normal equation as is,
    not scaled by history length), ``alpha`` (8.0), ``cg_steps`` (3: conjugate-gradient steps per solve, warm-started),
    ``engine``: ``auto`` (default: ``local`` up to ``local_max_interactions`` training interactions,
    ``blocked`` above; in cluster deploy mode also ``blocked`` when the local engine would not fit in half
    of ``spark.driver.memoryOverhead``), ``local`` (this package's solver on the driver, one thread per driver core: no
    Spark job per half-iteration), ``blocked`` (the same solver in Spark tasks, one per block of users or
    items; the driver holds only the item factors) or ``mllib`` (Spark MLlib's ALS, exact per-row solves:
    the benchmarks' reference); ``local_max_interactions`` (5,000,000); ``fold_in_max_history`` (500): most
    recent interactions used to solve a new or changed user's factors at scoring time.
    """

    factors: Annotated[int, Field(ge=1, le=1024)] = 32
    iterations: Annotated[int, Field(ge=1, le=200)] = 15
    regularization: Annotated[float, Field(ge=0)] = 60.0
    alpha: Annotated[float, Field(ge=0)] = 8.0
    cg_steps: Annotated[int, Field(ge=1, le=50)] = 3
    engine: Literal["auto", "local", "blocked", "mllib"] = "auto"
    local_max_interactions: Annotated[int, Field(ge=0)] = 5_000_000
    fold_in_max_history: Annotated[int, Field(ge=1)] = 500


class SimsSettings(RecipeSettings):
    """Item-item co-occurrence (the managed service's SIMS settings, with the defaults chosen on a
    validation split; the service's own defaults in brackets).

    similarity(i, j) = co-occurrences(i, j) / (users(i) x users(j)) ^ ``popularity_discount_factor``
    (0.5 [0.5]: 0 ranks by raw co-occurrence, 0.5 is cosine, 1 discounts popular items fully);
    ``min_cointeraction_count`` (3 [3]); users whose history length is outside the
    ``min/max_user_history_length_percentile`` (0.0 / 1.0 [0.005 / 0.995]) and items whose interaction count
    is outside ``min/max_item_interaction_count_percentile`` (0.0 / 1.0 [0.01 / 0.9]) are left out of the
    similarities; ``max_history`` (200): each user's most recent distinct items that enter the
    co-occurrence self-join (keeps it bounded); ``similar_items`` (400): neighbours kept per item;
    ``time_decay_half_life_days`` (null: no decay): for user queries the user's history is weighted by event
    weight x 2^(-age / half-life), as SAR does.
    """

    popularity_discount_factor: Share = 0.5
    min_cointeraction_count: Annotated[int, Field(ge=1)] = 3
    min_user_history_length_percentile: Share = 0.0
    max_user_history_length_percentile: Share = 1.0
    min_item_interaction_count_percentile: Share = 0.0
    max_item_interaction_count_percentile: Share = 1.0
    max_history: Annotated[int, Field(ge=2)] = 200
    similar_items: Annotated[int, Field(ge=1)] = 400
    time_decay_half_life_days: Positive | None = None


class EaseSettings(RecipeSettings):
    """EASE (Steck 2019): B = I - P / diag(P), P = (X^T X + ``regularization`` I)^-1, X the user x item
    matrix (each cell the largest event weight). ``regularization`` (500); ``max_items`` (30000): larger
    catalogs are refused before any work (the driver holds three items x items float64 matrices:
    24 x items^2 bytes, 21.6 GB at 30,000 items; the driver's memory is checked too)."""

    regularization: Annotated[float, Field(gt=0)] = 500.0
    max_items: Annotated[int, Field(ge=2)] = 30000


class PopularitySettings(RecipeSettings):
    """Items by number of distinct users; no settings of its own."""


class TrendingSettings(RecipeSettings):
    """Items whose interaction count grew most between the latest window and the one before.

    score = (latest - previous) / (previous + ``smoothing``), windows of ``window_days`` (7) ending at the
    newest interaction; items with fewer than ``min_recent_interactions`` (3) in the latest window are
    ranked after every trending item, by their latest count. ``smoothing`` (5) keeps one-off items from
    topping the list.
    """

    window_days: Positive = 7.0
    smoothing: Annotated[float, Field(ge=0)] = 5.0
    min_recent_interactions: Annotated[int, Field(ge=0)] = 3
