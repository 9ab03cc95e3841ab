"""Whether training a solution pays today: its ``retrain`` policy against its newest version.

``changed`` data means a commit after the version's pinned table version that changed rows: compaction
(OPTIMIZE), VACUUM and a MERGE that matched nothing leave the data as it was.

>>> due, reason = retrain_due(spark, config, "top-picks")         # doctest: +SKIP
>>> due, reason                                                    # doctest: +SKIP
(False, 'no dataset table changed since version 20261130T020101-ab12cd')
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.solutions.store import list_versions

# Operations that rewrite files without changing rows.
SAME_DATA = ("OPTIMIZE", "VACUUM START", "VACUUM END")
_ROWS_CHANGED = ("numTargetRowsInserted", "numTargetRowsUpdated", "numTargetRowsDeleted")


def retrain_due(spark, config: Config, name: str) -> tuple[bool, str]:
    """(whether to train ``name`` now, why), by the solution's ``retrain`` policy."""
    solution = config.solution(name)
    policy = solution.retrain
    if policy.when == "always":
        return True, "retrain.when is always"
    versions = list_versions(spark, config, name)
    if not versions:
        return True, "no version yet"
    newest = versions[-1]
    m = newest.manifest
    wanted = (solution.recipe, solution.recipe_settings().model_dump(), solution.events.model_dump())
    if _plain((m["recipe"], m["settings"], m["events"])) != _plain(wanted):
        return True, f"the recipe, settings or events differ from version {newest.version}'s"
    warehouse = Warehouse(spark, config)
    now = warehouse.versions()
    pinned = m["datasets"]
    changed = [d for d in sorted(set(now) | set(pinned))
               if _changed(spark, warehouse.path(d), pinned.get(d), now.get(d))]
    if not changed:
        return False, f"no dataset table changed since version {newest.version}"
    what = f"{', '.join(changed)} changed since version {newest.version}"
    if policy.new_interactions_fraction is None and policy.max_age_days is None:
        return True, what
    reasons = []
    if policy.new_interactions_fraction is not None:
        then = warehouse.read("interactions", pinned.get("interactions")).count() if "interactions" in pinned else 0
        grown = abs(warehouse.read("interactions").count() - then) / max(then, 1)
        if grown >= policy.new_interactions_fraction:
            return True, f"{what}: interactions changed by {grown:.1%} (>= {policy.new_interactions_fraction:.1%})"
        reasons.append(f"interactions changed by {grown:.1%} (< {policy.new_interactions_fraction:.1%})")
    if policy.max_age_days is not None:
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(m["created_at"])).total_seconds() / 86400
        if age >= policy.max_age_days:
            return True, f"{what}: version {newest.version} is {age:.1f} days old (>= {policy.max_age_days:g})"
        reasons.append(f"version {newest.version} is {age:.1f} days old (< {policy.max_age_days:g})")
    return False, f"{what}, but " + " and ".join(reasons)


def _changed(spark, path: str, pinned: int | None, now: int | None) -> bool:
    """Whether the table's rows changed between versions ``pinned`` and ``now`` (None: no table)."""
    if pinned == now:
        return False
    if pinned is None or now is None:
        return True
    from delta.tables import DeltaTable

    commits = (DeltaTable.forPath(spark, path).history().where(F.col("version") > pinned)
               .select("operation", "operationMetrics").collect())
    if len(commits) < now - pinned:  # the log no longer reaches back to the pinned version
        return True
    for c in commits:
        metrics = c.operationMetrics or {}
        if c.operation in SAME_DATA:
            continue
        if c.operation == "MERGE" and all(int(metrics.get(k, 0)) == 0 for k in _ROWS_CHANGED):
            continue
        return True
    return False


def _plain(value):
    """``value`` as JSON gives it back (tuples as lists...), to compare a manifest with live settings."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))
