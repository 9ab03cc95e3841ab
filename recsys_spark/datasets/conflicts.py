"""Two jobs writing one Delta table at once: the loser of a commit conflict tries again, then gives up
naming the other job.

Delta commits optimistically: a write reads a snapshot, writes its files, and commits only if no commit
since that snapshot touched what it read (two plain appends never conflict; two MERGEs into one
unpartitioned table always do). Every job's commits carry its job id as Delta's ``userMetadata``
(:func:`recsys_spark.jobruns.job_run`), so the table's history says which job won. A losing write has
committed nothing; :func:`retry_on_conflict` runs it again against the new snapshot (each write here is
idempotent: upserts by key, inserts only of new events, a FULL replace of the bulk rows), up to
``ATTEMPTS`` times with a growing, jittered pause, then raises :class:`ConcurrentJobError` naming the jobs
that changed the table.

>>> retry_on_conflict(warehouse, "users", lambda: upsert(...), what="import users")   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from recsys_spark.datasets.warehouse import Warehouse, table_version
from recsys_spark.errors import ConcurrentJobError, is_conflict

log = logging.getLogger(__name__)
T = TypeVar("T")
ATTEMPTS = 5
# Delta's conflict exceptions (io.delta.exceptions.*), as Python classes or inside a Java error's text.
def writers_since(warehouse: Warehouse, path: str, version: int | None) -> list[str]:
    """The commits made to the table at ``path`` after ``version``, as ``job <id> (<OPERATION>, version N)``
    (``another writer`` for commits without a job id: a writer outside this project)."""
    from delta.tables import DeltaTable

    history = DeltaTable.forPath(warehouse.spark, path).history(20)
    rows = history.where(history.version > (-1 if version is None else version)) \
        .select("version", "operation", "userMetadata").orderBy("version").collect()
    return [f"{'job ' + r.userMetadata if r.userMetadata else 'another writer'} ({r.operation}, version "
            f"{r.version})" for r in rows]


def retry_on_conflict(warehouse: Warehouse, dataset: str, action: Callable[[], T], *, what: str,
                      attempts: int = ATTEMPTS, pause: float = 1.0) -> T:
    """Run ``action`` (one write to ``dataset``'s table, or the table at the path ``dataset``), again
    when Delta refuses its commit because of a concurrent one; a :class:`ConcurrentJobError` naming the
    other jobs after ``attempts``."""
    path = dataset if "/" in dataset else warehouse.path(dataset)
    for attempt in range(1, attempts + 1):
        before = table_version(warehouse.spark, path)
        try:
            return action()
        except Exception as e:
            if not is_conflict(e):
                raise
            others = ", ".join(writers_since(warehouse, path, before)) or "another writer"
            if attempt == attempts:
                raise ConcurrentJobError(
                    f"{what}: the table {path} was changed by {others} while this job wrote it, {attempts} "
                    f"times in a row; this job committed nothing there. Run it again when that job has "
                    f"finished.") from e
            log.warning("%s: %s was changed by %s while this job wrote it; trying again (%d of %d)", what, path,
                        others, attempt + 1, attempts)
            time.sleep(pause * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")
