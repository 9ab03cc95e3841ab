"""Every recipe, declared once: its name and the managed service's aliases, settings class, model class,
the Spark estimator that fits it, the request kind it answers and what it can do. The config, training,
evaluation, batch inference and the real-time server read this table; nothing else lists recipes.

The estimator is named by import path and loaded only when training, so this module (like the whole
core) imports without Spark.

>>> entry("aws-sims").name
'sims'
>>> entry("sims").request
'related'
>>> sorted(e.name for e in RECIPES.values() if e.stores_users)
['personalized-ranking', 'user-personalization']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from recsys_spark.core.models.base import Model
from recsys_spark.core.models.ease import EaseModel, check_size
from recsys_spark.core.models.factors import FactorModel, RankingModel
from recsys_spark.core.models.ranked import RankedItemsModel
from recsys_spark.core.models.similarity import ItemSimilarityModel
from recsys_spark.core.settings import (EaseSettings, FactorSettings, PopularitySettings, RecipeSettings,
                                        SimsSettings, TrendingSettings)
from recsys_spark.errors import UserError

#: Request kinds: ``user`` (userId), ``related`` (itemId, or userId for a user query of an item model),
#: ``ranking`` (userId + itemList).
REQUEST_KINDS = ("user", "related", "ranking")


@dataclass(frozen=True)
class RecipeEntry:
    """One recipe. ``estimator``: ``module:Class`` of its Spark estimator (:mod:`recsys_spark.recipes`);
    ``request``: the request kind it answers; ``scores_items``: answers related-items queries (itemId);
    ``stores_users``: keeps trained per-user state (its model's ``users`` table) and folds in users who are
    new or changed since training; ``checks``: pre-fit checks, called with (data counts, settings) before
    any training work (they raise UserError)."""

    name: str
    aliases: tuple[str, ...]
    settings: type[RecipeSettings]
    model: type[Model]
    estimator: str
    request: str
    scores_items: bool = False
    stores_users: bool = False
    checks: tuple[Callable[[dict, RecipeSettings], None], ...] = ()

    def estimator_class(self):
        """The Spark estimator class (imports pyspark)."""
        module, name = self.estimator.split(":")
        return getattr(importlib.import_module(module), name)

    def check(self, solution: str, counts: dict, settings: RecipeSettings) -> None:
        """Refuse data the recipe cannot train on, before any work: the minimums every recipe has
        (``min_interactions``, ``min_users_with_two``, as the managed service does), then its own checks.
        ``counts``: interactions, users, users_with_two, items."""
        problems = []
        if counts["interactions"] < settings.min_interactions:
            problems.append(f"{counts['interactions']:,} interactions, at least {settings.min_interactions:,} "
                            "needed (setting min_interactions)")
        if counts["users_with_two"] < settings.min_users_with_two:
            problems.append(f"{counts['users_with_two']:,} users with 2 or more interactions, at least "
                            f"{settings.min_users_with_two:,} needed (setting min_users_with_two)")
        if problems:
            raise UserError(f"solution {solution!r} cannot be trained: after its event settings the data has "
                            + "; ".join(problems))
        for check in self.checks:
            check(counts, settings)

    def settings_for(self, values: dict) -> RecipeSettings:
        """``values`` over the defaults (raises pydantic's ValidationError)."""
        return self.settings.model_validate(values)


def _ease_size(counts: dict, settings: EaseSettings) -> None:
    check_size(counts["items"], settings)


RECIPES: dict[str, RecipeEntry] = {e.name: e for e in (
    RecipeEntry("user-personalization", ("aws-user-personalization",), FactorSettings, FactorModel,
                "recsys_spark.recipes.als:UserPersonalization", "user", stores_users=True),
    RecipeEntry("personalized-ranking", ("aws-personalized-ranking",), FactorSettings, RankingModel,
                "recsys_spark.recipes.als:PersonalizedRanking", "ranking", stores_users=True),
    RecipeEntry("sims", ("aws-sims",), SimsSettings, ItemSimilarityModel, "recsys_spark.recipes.sims:Sims",
                "related", scores_items=True),
    RecipeEntry("ease", (), EaseSettings, EaseModel, "recsys_spark.recipes.ease:Ease", "related",
                scores_items=True, checks=(_ease_size,)),
    RecipeEntry("popularity-count", ("aws-popularity-count",), PopularitySettings, RankedItemsModel,
                "recsys_spark.recipes.popularity:PopularityCount", "user"),
    RecipeEntry("trending-now", ("aws-trending-now",), TrendingSettings, RankedItemsModel,
                "recsys_spark.recipes.popularity:TrendingNow", "user"),
)}


def entry(name: str) -> RecipeEntry:
    """The recipe called ``name`` or one of its aliases; ValueError listing the known recipes otherwise."""
    for e in RECIPES.values():
        if name == e.name or name in e.aliases:
            return e
    known = ", ".join(f"{e.name} ({', '.join(e.aliases)})" if e.aliases else e.name for e in RECIPES.values())
    raise ValueError(f"unknown recipe {name!r}; known recipes: {known}")


def settings_for(recipe: str, values: dict) -> RecipeSettings:
    """The recipe's settings object: ``values`` over the defaults (raises pydantic's ValidationError).

    >>> settings_for("sims", {"min_cointeraction_count": 2}).popularity_discount_factor
    0.5
    """
    return entry(recipe).settings_for(values)
