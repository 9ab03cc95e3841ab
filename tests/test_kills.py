"""Kill anywhere: a representative part of the kill matrix (``tests/kill_matrix.py``); every point and random
delays run in ``scripts/soak_kills.py``.

Each case SIGKILLs one job's process group at a named point (``recsys_spark/killpoints.py``), chosen where the
states differ most: an ingest batch merged but not checkpointed (replayed), a batch run written but not
committed by its manifest, a deletion done in one table but not the other. Each costs a process with its
own JVM, so the suite keeps to these three; the soak script runs every point (train's, import's and
maintain's too) and timed kills. The import killed while Spark writes its data files (a timed kill) is
``test_import.py``'s.
"""

from __future__ import annotations

import pytest

from kill_matrix import build_base, run_case

CASES = [
    ("import-new", "import.ledger-written"),
    ("ingest", "ingest.batch-merged"),
    ("batch", "batch.staged"),
    ("delete-users", "delete-users.dataset-done"),
]


@pytest.fixture(scope="module")
def base(spark, tmp_path_factory):
    return build_base(spark, tmp_path_factory.mktemp("kills") / "base")


@pytest.mark.parametrize(("kind", "point"), CASES, ids=[p for _, p in CASES])
def test_a_killed_job_leaves_the_old_or_the_new_state_and_a_rerun_finishes_it(spark, base, tmp_path, kind, point):
    outcome = run_case(spark, base, tmp_path, kind, point)
    assert outcome.killed, f"the job was not killed at {point} (exit {outcome.returncode}):\n{outcome.output}"
    assert not outcome.mixed, f"after a kill at {point}, neither the old nor the new state: {outcome.mixed}"
    assert not outcome.jobs_problems, outcome.jobs_problems
    assert not outcome.rerun_differs, f"the rerun after {point} differs from an uninterrupted run: " \
                                      f"{outcome.rerun_differs}"
