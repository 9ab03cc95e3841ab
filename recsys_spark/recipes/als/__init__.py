"""``user-personalization`` and ``personalized-ranking``: implicit-feedback ALS, fitted by one of three
engines with one signature (``fit(data, settings) -> (users table, item factors)``), chosen by the
``engine`` setting (``auto``, the default, picks ``local`` up to ``local_max_interactions`` training
interactions and ``blocked`` above, see :func:`choose_engine`):

* :mod:`.local`: the solver on the driver, one thread per core;
* :mod:`.blocked`: the same solver in Spark tasks, one per block of users or items; the driver holds only
  the item factors, the user factors stay in their blocks and are written from there;
* :mod:`.mllib`: Spark MLlib's ALS, which solves each row exactly (normal equations) rather than by a few
  conjugate-gradient steps: the reference the benchmarks compare against.

``local`` and ``blocked`` start from the same random factors (a user's drawn from its ID and the seed) and
solve the same equations (:mod:`recsys_spark.core.kernels.als`), so they give the same model up to float
rounding. The model is :mod:`recsys_spark.core.models.factors`: users whose interactions are newer than the
model, or who are not in it, are folded in at scoring time from the item factors and their history.
"""

from __future__ import annotations

import logging

from recsys_spark.core.models.factors import FactorModel, RankingModel
from recsys_spark.core.settings import FactorSettings
from recsys_spark.recipes.als import blocked, local, mllib
from recsys_spark.recipes.fitting import Recipe, TrainingSet

log = logging.getLogger(__name__)
ENGINES = {"local": local.fit, "blocked": blocked.fit, "mllib": mllib.fit}


class UserPersonalization(Recipe):
    name = "user-personalization"

    def fit(self, data: TrainingSet) -> FactorModel:
        s: FactorSettings = self.settings
        engine = choose_engine(s, data.rows, dict(data.spark.sparkContext.getConf().getAll()))
        log.info("%s: %s engine, %d interactions", self.name, engine, data.rows)
        users, item_factors = ENGINES[engine](data, s)
        return FactorModel(data.item_ids, data.popularity, item_factors, s, users)


class PersonalizedRanking(UserPersonalization):
    name = "personalized-ranking"

    def fit(self, data: TrainingSet) -> RankingModel:
        model = super().fit(data)
        return RankingModel(model.item_ids, model.popularity, model.item_factors, model.settings, model.users)


LOCAL_BYTES_PER_INTERACTION = 100  # the local engine's peak driver memory per interaction (measured ~65)


def choose_engine(s: FactorSettings, rows: int, conf: dict[str, str]) -> str:
    """The engine to train ``rows`` interactions with: ``s.engine`` unless it is ``auto``, which means
    ``local`` up to ``s.local_max_interactions``, else ``blocked``. In cluster deploy mode (YARN,
    Kubernetes) the driver's Python memory must fit in its container's non-heap share
    (``spark.driver.memoryOverhead``), so there ``local`` also needs its peak under half of that.

    >>> choose_engine(FactorSettings(), 3_000_000, {"spark.submit.deployMode": "cluster"})
    'blocked'
    """
    if s.engine != "auto":
        return s.engine
    if rows > s.local_max_interactions:
        return "blocked"
    if conf.get("spark.submit.deployMode") == "cluster":
        overhead = conf.get("spark.driver.memoryOverhead")
        budget = (_mebibytes(overhead) if overhead else max(384, float(conf.get(
            "spark.driver.memoryOverheadFactor", 0.1)) * _mebibytes(conf.get("spark.driver.memory", "1g")))) * 2**20
        if rows * LOCAL_BYTES_PER_INTERACTION > budget / 2:
            return "blocked"
    return "local"


def _mebibytes(size: str) -> float:
    """A Spark memory setting ("512", "512m", "4g", "1t"; no unit = MiB) in MiB."""
    size = size.strip().lower().removesuffix("b")
    scale = {"k": 2**-10, "m": 1, "g": 2**10, "t": 2**20}
    return float(size[:-1]) * scale[size[-1]] if size[-1:] in scale else float(size)
