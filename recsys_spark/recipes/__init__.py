"""Recipes: one module each, one interface (:class:`~recsys_spark.recipes.base.Recipe` -> ``Model``).

>>> recipe_for("popularity-count", {}).fit(training)   # doctest: +SKIP
"""

from __future__ import annotations

from recsys_spark.recipes.base import Model, Recipe, TrainingSet, UserBlock
from recsys_spark.recipes.settings import SETTINGS, RecipeSettings, settings_for


def _recipes() -> dict[str, type[Recipe]]:
    from recsys_spark.recipes.ease import Ease
    from recsys_spark.recipes.popularity import PopularityCount, TrendingNow
    from recsys_spark.recipes.sims import Sims
    from recsys_spark.recipes.user_personalization import PersonalizedRanking, UserPersonalization

    return {r.name: r for r in (UserPersonalization, PersonalizedRanking, Sims, Ease, PopularityCount, TrendingNow)}


def recipe_for(name: str, settings: dict | RecipeSettings) -> Recipe:
    """The recipe ``name`` with ``settings`` (a dict is validated, defaults filled in)."""
    if not isinstance(settings, RecipeSettings):
        settings = settings_for(name, settings)
    return _recipes()[name](settings)


__all__ = ["SETTINGS", "Model", "Recipe", "RecipeSettings", "TrainingSet", "UserBlock", "recipe_for",
           "settings_for"]
