"""The recipes' Spark estimators: each fits a core model (:mod:`recsys_spark.core.models`) on a
:class:`~recsys_spark.recipes.fitting.TrainingSet`. Which estimator fits which recipe is declared in the
registry (:mod:`recsys_spark.core.registry`), not here.

>>> recipe_for("popularity-count", {}).fit(training)   # doctest: +SKIP
"""

from __future__ import annotations

from recsys_spark.core.registry import entry
from recsys_spark.core.settings import RecipeSettings
from recsys_spark.recipes.fitting import Recipe, TrainingSet


def recipe_for(name: str, settings: dict | RecipeSettings) -> Recipe:
    """The estimator of recipe ``name`` with ``settings`` (a dict is validated, defaults filled in)."""
    recipe = entry(name)
    if not isinstance(settings, RecipeSettings):
        settings = recipe.settings_for(settings)
    return recipe.estimator_class()(settings)


__all__ = ["Recipe", "TrainingSet", "recipe_for"]
