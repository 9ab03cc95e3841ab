"""Named points where a test (or the soak script) can kill a job as if the machine died there.

Set ``RECSYS_SPARK_KILL_AT`` to a point's name, e.g. ``batch.staged``, and the process gets
SIGKILL when it reaches that point: the whole process group when this process leads it (so Spark's JVM and
its Python workers die with it, as on a lost machine), else this process alone. ``name#2`` kills on the
second time the point is reached (an ingest batch, a second import). Unset, a point costs one dictionary
lookup. The points sit between the durable steps of each job (a Delta commit, a file written, a manifest),
so a kill at each one leaves every state a kill anywhere can leave; what a kill *inside* a Spark write adds
(uncommitted data files that no table version lists) is covered by timed kills.

>>> kill_point("import.rejects-kept")   # nothing happens unless RECSYS_SPARK_KILL_AT names it
"""

from __future__ import annotations

import os
import signal

ENV = "RECSYS_SPARK_KILL_AT"
_reached: dict[str, int] = {}

# Every point, by job (tests and scripts/soak_kills.py pick from here; a point not listed is an error there).
POINTS = {
    "import": ("import.started", "import.rejects-kept", "import.committed"),
    "import-new": ("import.ledger-written",),  # an only_new_files import: between its ledger and its data
    "ingest": ("ingest.batch-rejects-kept", "ingest.batch-merged", "ingest.dataset-done"),
    "train": ("train.fitted", "train.tables-written", "train.saved"),
    "batch": ("batch.staged", "batch.manifest-written", "batch.committed"),
    "delete-users": ("delete-users.dataset-done", "delete-users.done"),
    "maintain": ("maintain.table-compacted", "maintain.version-removed"),
}


def kill_point(name: str) -> None:
    """SIGKILL this job here when ``RECSYS_SPARK_KILL_AT`` names this point (and its count is reached)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("#")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] < int(nth or 1):
        return
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
