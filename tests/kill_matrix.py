"""The kill matrix: SIGKILL a job (a subprocess of the command line) at a named point or after a delay, then
check that every table, version list and output is the state before the job or the state an uninterrupted
run leaves, never a mix, and that running the job again reaches the uninterrupted run's state.

Used by ``tests/test_kills.py`` (a representative subset) and ``scripts/soak_kills.py`` (every point and
random delays, bounded in time). A small dataset group is built once (:func:`build_base`, in the caller's
Spark session); each case copies it, prepares the job's input, and runs the reference (uninterrupted) job
on a second copy in the same session, so only the killed job pays for a process of its own.

What a reader sees is what is compared: a Delta table's rows at its latest version; a solution's complete
versions (a folder without ``manifest.json`` is unfinished and not listed); a batch output's lines through
its ``_manifest.json``, else no output.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TABLES = ("interactions", "users", "items", "_rejects/interactions", "_rejects/users")
# Columns that differ between two equal runs (ids, times) or name the run's folder.
VOLATILE = {"job_id", "rejected_at"}

CONFIG = """
dataset_group:
  name: shop
  root: warehouse
  schemas:
    interactions:
      fields:
        - {name: USER_ID, type: string}
        - {name: ITEM_ID, type: string}
        - {name: TIMESTAMP, type: long}
        - {name: EVENT_TYPE, type: string}
    users:
      fields:
        - {name: USER_ID, type: string}
        - {name: GENDER, type: ["null", string], categorical: true}
    items:
      fields:
        - {name: ITEM_ID, type: string}
        - {name: GENRES, type: ["null", string], categorical: true}
imports:
  - {dataset: users, source: data/users.csv, mode: FULL, max_reject_ratio: 0.5}
  - {dataset: interactions, source: data/interactions.csv, mode: FULL, max_reject_ratio: 0.5}
  - {dataset: interactions, source: data/drops, mode: INCREMENTAL, only_new_files: true, max_reject_ratio: 0.5}
ingest: {landing: landing, max_reject_ratio: 0.5}
solutions:
  - {name: popular, recipe: popularity-count, settings: {min_interactions: 1, min_users_with_two: 1}}
batch_jobs:
  - {name: weekly, solution: popular, input: all_users, output: out/weekly, num_results: 5}
maintain: {keep_versions: 1}
spark:
  master: local[1]
  conf: {spark.ui.enabled: false, spark.sql.shuffle.partitions: 2, spark.default.parallelism: 1}
"""

# The command line of each job kind, on the case's config.
COMMANDS = {
    "import": ["import"],
    "import-new": ["import", "--dataset", "interactions"],
    "ingest": ["ingest"],
    "train": ["train", "--no-evaluate", "--force"],
    "batch": ["batch"],
    "delete-users": ["delete-users", "--source", "{case}/data/delete.csv"],
    "maintain": ["maintain"],
}


def interactions_csv(rows: int, shift: int = 0) -> str:
    lines = ["USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE"]
    lines += [f"u{k % 40},i{(k * 7 + shift) % 30},{1_700_000_000 + k},view" for k in range(rows)]
    return "\n".join(lines + [f"u1,i1,not-a-time-{shift},view"]) + "\n"  # a reject: the rejects change too


def users_csv(shift: int = 0) -> str:
    return "USER_ID,GENDER\n" + "".join(f"u{k},{'FM'[(k + shift) % 2]}\n" for k in range(40))


def events(first: int, count: int) -> str:
    return "".join(json.dumps({"userId": f"u{k % 40}", "sessionId": "s", "eventType": "view", "eventId": f"e{k}",
                               "sentAt": 1_710_000_000 + k, "itemId": f"i{k % 30}"}) + "\n"
                   for k in range(first, first + count)) + '{"broken json\n'


def build_data(folder: Path) -> Path:
    """The dataset group's folder with its config and CSV files, nothing run yet."""
    (folder / "data").mkdir(parents=True)
    (folder / "landing" / "events").mkdir(parents=True)
    (folder / "data" / "drops").mkdir()
    (folder / "config.yaml").write_text(CONFIG)
    (folder / "data" / "interactions.csv").write_text(interactions_csv(400))
    (folder / "data" / "users.csv").write_text(users_csv())
    return folder


def build_base(spark, folder: Path) -> Path:
    """A dataset group with everything done once: imports, a trained version, a batch output. Returns the
    folder (config.yaml, data/, landing/, warehouse/, out/)."""
    from recsys_spark.config import load_config
    from recsys_spark.datasets.importer import run_imports
    from recsys_spark.inference.batch import run_batch
    from recsys_spark.solutions.train import train_solution

    config = load_config(build_data(folder) / "config.yaml")
    run_imports(spark, config)
    train_solution(spark, config, "popular", evaluate=False)
    run_batch(spark, config, "weekly")
    return folder


def prepare(spark, case: Path, kind: str) -> None:
    """Give the job something to change: new data, new events, a deletion list."""
    if kind == "import":
        (case / "data" / "interactions.csv").write_text(interactions_csv(500, shift=3))
        (case / "data" / "users.csv").write_text(users_csv(shift=1))
    elif kind == "import-new":  # a day's drop: only_new_files imports it
        (case / "data" / "drops" / "day-2.csv").write_text(interactions_csv(200, shift=7))
    elif kind == "ingest":
        for n in range(3):  # three files: one batch, then a rerun that finds nothing new
            (case / "landing" / "events" / f"part-{n}.json").write_text(events(n * 50, 50))
    elif kind == "batch":
        # New events change users' histories, which the output excludes: the new output differs.
        (case / "landing" / "events" / "more.json").write_text(events(0, 60))
        run_in_process(spark, case, "ingest")
    elif kind == "delete-users":
        (case / "data" / "delete.csv").write_text("USER_ID\nu3\nu7\n")
    elif kind == "maintain":
        # Small files to compact and two older versions to prune (keep_versions: 1).
        (case / "landing" / "events" / "more.json").write_text(events(0, 60))
        run_in_process(spark, case, "ingest")
        run_in_process(spark, case, "train")
        run_in_process(spark, case, "train")


def _config(case: Path):
    from recsys_spark.config import load_config

    return load_config(case / "config.yaml")


def run_in_process(spark, case: Path, kind: str) -> None:
    """The job, uninterrupted, in this process's session."""
    config = _config(case)
    if kind in ("import", "import-new"):
        from recsys_spark.datasets.importer import run_imports
        run_imports(spark, config, dataset="interactions" if kind == "import-new" else None)
    elif kind == "ingest":
        from recsys_spark.datasets.ingest import run_ingest
        run_ingest(spark, config)
    elif kind == "train":
        from recsys_spark.solutions.train import train_solution
        train_solution(spark, config, "popular", evaluate=False)
    elif kind == "batch":
        from recsys_spark.inference.batch import run_batch
        run_batch(spark, config, "weekly")
    elif kind == "delete-users":
        from recsys_spark.datasets.deletion import delete_users
        delete_users(spark, config, str(case / "data" / "delete.csv"))
    elif kind == "maintain":
        from recsys_spark.datasets.maintenance import run_maintain
        run_maintain(spark, config)
    else:
        raise ValueError(kind)


def state(spark, case: Path) -> dict[str, object]:
    """What a reader sees under ``case``: each table's rows, each solution's complete versions, each batch
    output's lines (None when it has no manifest)."""
    from recsys_spark.solutions.store import list_versions

    seen: dict[str, object] = {}
    root = case / "warehouse"
    for table in TABLES:
        path = root / table
        if not (path / "_delta_log").is_dir():
            seen[table] = None
            continue
        frame = spark.read.format("delta").load(str(path))
        frame = frame.select(*[c for c in frame.columns if c not in VOLATILE])
        rows = [_relative(json.dumps(r.asDict(), sort_keys=True, default=str), case) for r in frame.collect()]
        # Rejects are a log per job: a killed run's stay (under its job id) beside its rerun's, as they stay
        # when a job is simply run twice; what is compared is which lines were rejected, and why.
        seen[table] = tuple(sorted(set(rows) if table.startswith("_rejects") else rows))
    versions = list_versions(spark, _config(case), "popular")
    seen["solutions/popular"] = tuple(json.dumps({k: v.manifest[k] for k in ("datasets", "counts", "tables")},
                                                 sort_keys=True) for v in versions)
    output = case / "out" / "weekly"
    if (output / "_manifest.json").is_file():  # readers follow the manifest to the committed run's files
        files = json.loads((output / "_manifest.json").read_text())["files"]
        seen["out/weekly"] = tuple(sorted(line for f in files for line in (output / f).read_text().splitlines()))
    else:
        seen["out/weekly"] = None
    return seen


def _relative(text: str, case: Path) -> str:
    """Paths under a case's folder (or its reference copy's: rows copied from the case keep its paths)
    written relative to it."""
    for folder in (case, case.parent / "case", case.parent / "reference"):
        text = text.replace(str(folder), "<case>")
    return text


def jobs_are_consistent(spark, case: Path) -> list[str]:
    """Problems in ``_jobs``: it must be readable, one row per job id, each SUCCEEDED, FAILED or SKIPPED."""
    path = case / "warehouse" / "_jobs"
    rows = spark.read.format("delta").load(str(path)).collect()
    ids = [r.job_id for r in rows]
    problems = [f"job {i} recorded {ids.count(i)} times" for i in set(ids) if ids.count(i) > 1]
    problems += [f"job {r.job_id} has status {r.status}" for r in rows
                 if r.status not in ("SUCCEEDED", "FAILED", "SKIPPED")]
    return problems


@dataclass
class Outcome:
    """One case: how the job ended and what was found."""

    kind: str
    kill: str  # a point name, or "after N.N s"
    returncode: int | None = None
    killed: bool = False
    seconds: float = 0.0
    mixed: list[str] = field(default_factory=list)  # components in neither the old nor the new state
    rerun_differs: list[str] = field(default_factory=list)
    jobs_problems: list[str] = field(default_factory=list)
    output: str = ""

    @property
    def ok(self) -> bool:
        return not (self.mixed or self.rerun_differs or self.jobs_problems)


def spawn(case: Path, kind: str, point: str | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RECSYS_SPARK_KILL_AT", None)
    if point:
        env["RECSYS_SPARK_KILL_AT"] = point
    args = [a.format(case=case) for a in COMMANDS[kind]]
    # Its own process group: the kill takes Spark's JVM and Python workers with it, as a lost machine does.
    return subprocess.Popen([sys.executable, "-m", "recsys_spark", args[0], "--config", str(case / "config.yaml"),
                             *args[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, cwd=case)


def pruning(kind: str, key: str, killed, before, after) -> bool:
    """``maintain`` removes old versions one at a time, each whole (its manifest goes first): a kill between
    two leaves complete versions only, fewer than before and more than after."""
    return kind == "maintain" and key.startswith("solutions/") and set(after) <= set(killed) <= set(before)


def run_case(spark, base: Path, work: Path, kind: str, point: str | None = None, delay: float | None = None,
             timeout: float = 900) -> Outcome:
    """Copy ``base``, prepare ``kind``'s input, kill the job at ``point`` (or ``delay`` seconds after its
    start), then compare with a reference run on another copy, and rerun."""
    from recsys_spark.inference.output import recover

    case, reference = work / "case", work / "reference"
    shutil.copytree(base, case)
    prepare(spark, case, kind)
    shutil.copytree(case, reference)
    before = state(spark, case)
    outcome = Outcome(kind, point or f"after {delay:.1f} s")
    started = time.monotonic()
    proc = spawn(case, kind, point)
    try:
        if delay is None:  # the reference run here while the killed one starts its own JVM
            run_in_process(spark, reference, kind)
        if delay is not None:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        outcome.output = proc.communicate(timeout=timeout)[0].decode(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    outcome.seconds = time.monotonic() - started
    outcome.returncode = proc.returncode
    if delay is not None:  # after the kill: its timing must not depend on this process's load
        run_in_process(spark, reference, kind)
    after = state(spark, reference)
    outcome.killed = proc.returncode == -signal.SIGKILL
    # A batch run killed before its manifest leaves a run folder nothing points at; the next run's first step
    # deletes it. Readers never see it either way.
    recover(spark, str(case / "out" / "weekly"))
    killed = state(spark, case)
    outcome.mixed = [k for k in after if killed[k] not in (before[k], after[k]) and not pruning(kind, k, killed[k],
                                                                                              before[k], after[k])]
    outcome.jobs_problems = jobs_are_consistent(spark, case)
    run_in_process(spark, case, kind)
    rerun = state(spark, case)
    outcome.rerun_differs = [k for k in after if rerun[k] != after[k]]
    outcome.jobs_problems += jobs_are_consistent(spark, case)
    return outcome
