"""Two writers at once on one warehouse root: Delta's commit conflicts retried with the other job named,
leases for what takes one job at a time, and two whole pipelines run together (one as its own process)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from kill_matrix import REPO, build_data, events, state
from recsys_spark.config import load_config
from recsys_spark.datasets import writes
from recsys_spark.datasets.conflicts import retry_on_conflict
from recsys_spark.datasets.importer import run_imports
from recsys_spark.datasets.warehouse import BULK, STREAM, Warehouse
from recsys_spark.errors import ConcurrentJobError
from recsys_spark.jobruns import job_run
from recsys_spark.leases import acquire, lease, release
from recsys_spark.pipeline import run_pipeline


@pytest.fixture
def group(spark, tmp_path):
    """A dataset group with its users imported."""
    folder = build_data(tmp_path / "group")
    config = load_config(folder / "config.yaml")
    run_imports(spark, config, "users")
    return config


def waiting_rows(spark, flag: Path, ids: list[str]):
    """Users whose reading waits (inside the Spark task, so inside the writer's Delta transaction) until
    ``flag`` exists: the other writer commits in between."""
    @F.udf("string")
    def wait_for_flag(user_id):
        deadline = time.monotonic() + 120
        while not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.05)
        return user_id

    rows = spark.createDataFrame([(u, "F", i) for i, u in enumerate(ids)], "USER_ID string, GENDER string, _order long")
    return rows.withColumn("USER_ID", wait_for_flag("USER_ID"))


def commit_meanwhile(spark, config, flag: Path, user: str) -> dict:
    """In a second session (its own job id in its commits): upsert one user, then raise ``flag``."""
    other = spark.newSession()
    warehouse = Warehouse(other, config)
    done = {}

    def work():
        try:
            time.sleep(1)
            with job_run(warehouse, "ingest", None, {}) as run:
                done["job_id"] = run.job_id
                rows = other.createDataFrame([(user, "M", 0)], "USER_ID string, GENDER string, _order long")
                writes.upsert(warehouse, "users", rows, STREAM)
        finally:
            flag.touch()

    thread = threading.Thread(target=work)
    thread.start()
    done["thread"] = thread
    return done


def test_a_merge_that_loses_a_conflict_is_retried_and_names_the_winner(spark, group, tmp_path, caplog):
    warehouse = Warehouse(spark, group)
    flag = tmp_path / "flag"
    other = commit_meanwhile(spark, group, flag, "new-from-ingest")
    with caplog.at_level("WARNING", logger="recsys_spark.datasets.conflicts"), \
            job_run(warehouse, "import", "users", {}):
        inserted, _ = writes.upsert(warehouse, "users", waiting_rows(spark, flag, ["new-from-import"]), BULK)
    other["thread"].join()
    assert inserted == 1
    ids = {r.USER_ID for r in warehouse.read("users").collect()}
    assert {"new-from-import", "new-from-ingest"} <= ids  # neither write lost
    retried = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert retried and f"job {other['job_id']} (MERGE" in retried[0]


def test_a_writer_that_keeps_losing_fails_naming_the_other_job(spark, group, tmp_path):
    from delta.tables import DeltaTable

    warehouse = Warehouse(spark, group)
    flag = tmp_path / "flag"
    source = waiting_rows(spark, flag, ["late"])
    other = commit_meanwhile(spark, group, flag, "winner")

    def merge():
        return (DeltaTable.forPath(spark, warehouse.path("users")).alias("t")
                .merge(source.drop("_order").alias("s"), "t.USER_ID = s.USER_ID")
                .whenNotMatchedInsert(values={"USER_ID": "s.USER_ID", "GENDER": "s.GENDER", "_ORIGIN": "'bulk'"})
                .execute())

    with pytest.raises(ConcurrentJobError) as e:
        retry_on_conflict(warehouse, "users", merge, what="import users", attempts=1)
    other["thread"].join()
    message = str(e.value)
    assert f"job {other['job_id']} (MERGE" in message and "committed nothing" in message
    assert "late" not in {r.USER_ID for r in warehouse.read("users").collect()}


def test_a_lease_waits_for_its_holder_fails_naming_it_and_is_taken_over_from_a_dead_one(spark, group):
    """The Delta table leases of a root on a shared store (S3): acquire and release are what lease() calls
    there; they run on any root."""
    warehouse = Warehouse(spark, group)
    acquire(warehouse, "ingest", "ingest-first")
    with pytest.raises(ConcurrentJobError, match=r"ingest is in use by job ingest-first \(host .*process "
                                                 rf"{os.getpid()}"):
        acquire(warehouse, "ingest", "ingest-second", wait=1, poll=0.2)
    release(warehouse, "ingest", "ingest-first")
    # Released: the next job takes it at once. A job killed while holding it: its process is gone.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    from delta.tables import DeltaTable
    acquire(warehouse, "ingest", "ingest-killed")
    DeltaTable.forPath(spark, f"{warehouse.root}/_leases").update(F.col("name") == "ingest", {"pid": F.lit(int(dead))})
    acquire(warehouse, "ingest", "ingest-after-kill", wait=1, poll=0.2)  # taken over at once
    holders = spark.read.format("delta").load(f"{warehouse.root}/_leases").collect()
    assert [(r.name, r.job_id) for r in holders] == [("ingest", "ingest-after-kill")]


def test_a_lease_on_a_local_root_is_a_lock_its_holders_process_frees_however_it_ends(spark, group):
    warehouse = Warehouse(spark, group)
    code = (f"import sys, time, types; sys.path.insert(0, {str(REPO)!r}); from recsys_spark.leases import lease\n"
            f"with lease(types.SimpleNamespace(root={group.root!r}), 'batch output x', 'batch-holder'):\n"
            f"    print('held', flush=True); time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConcurrentJobError, match=rf"batch output x is in use by job batch-holder \(host .*"
                                                     rf"process {holder.pid}, since"):
            with lease(warehouse, "batch output x", "batch-second", wait=0.5):
                pass
        with lease(warehouse, "another output", "batch-other", wait=0):  # another name is another lock
            pass
    finally:
        holder.kill()
        holder.wait()
    started = time.monotonic()
    with lease(warehouse, "batch output x", "batch-after-kill", wait=5):  # free at once: its holder is gone
        with pytest.raises(ConcurrentJobError, match="in use by job batch-after-kill"):
            with lease(warehouse, "batch output x", "batch-same-process", wait=0.2):  # another thread's, say
                pass
    assert time.monotonic() - started < 3
    assert not (Path(group.root) / "_leases").exists()  # no Delta table on a local root


def test_two_pipelines_on_one_root_at_once_lose_nothing(spark, tmp_path):
    """One pipeline as its own process, one in this process, started together on the same root, each with
    imports, ingestion and training: every table ends as one pipeline alone leaves it, both versions are
    complete, and ``_jobs`` has each job once. (Pipelines take a turn on the root: these two do not, to be
    any two writers at once. Two runs of one batch job take turns through a lease, as two ingests do: tested above.)"""
    folder = build_data(tmp_path / "group")
    # Both pipelines train: whether the later one finds changed data depends on how their steps interleave.
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("min_users_with_two: 1}", "min_users_with_two: 1}, "
                                                 "retrain: {when: always}"))
    for n in range(4):
        (folder / "landing" / "events" / f"part-{n}.json").write_text(events(n * 40, 40))
    reference = tmp_path / "reference"
    shutil.copytree(folder, reference)
    steps = ("import", "ingest", "train")  # the writers of shared tables (maintain would only tidy after them)
    run_pipeline(spark, load_config(reference / "config.yaml"), steps)
    expected = state(spark, reference)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "recsys_spark", "pipeline", "run", "--config",
                             str(folder / "config.yaml"), "--steps", ",".join(steps)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, cwd=folder)
    try:
        # Start once the other process is about to write (its JVM is up), so their writes overlap.
        deadline = time.monotonic() + 120
        while not (folder / "warehouse" / "_staging").exists() and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.1)
        # No pipeline turn here: the two runs are meant to overlap (jobs of any two processes may).
        run_pipeline(spark, load_config(folder / "config.yaml"), steps, wait_minutes=None)
        out = proc.communicate(timeout=600)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out[-4000:]
    found = state(spark, folder)
    for key in ("interactions", "users", "_rejects/interactions"):
        assert found[key] == expected[key], key
    # Both versions complete, trained on the same rows (the table versions they pin differ: the other
    # pipeline's imports committed again in between).
    trained = [{k: v for k, v in json.loads(m).items() if k != "datasets"} for m in found["solutions/popular"]]
    [alone] = [{k: v for k, v in json.loads(m).items() if k != "datasets"} for m in expected["solutions/popular"]]
    assert trained == [alone, alone]
    jobs = spark.read.format("delta").load(str(folder / "warehouse" / "_jobs")).collect()
    assert len({r.job_id for r in jobs}) == len(jobs) and {r.status for r in jobs} == {"SUCCEEDED"}
    kinds = sorted(r.kind for r in jobs)
    assert kinds == sorted(["import"] * 6 + ["ingest"] * 2 + ["train"] * 2), kinds
    print(json.dumps({"retries_logged": out.count("trying again")}))


def test_creators_of_one_table_at_once_in_one_application_all_succeed(spark, tmp_path):
    """Jobs running at once in one application may each create a missing table (a dataset's, its rejects,
    the leases): none of the creators of one path fails, the table has one commit. (The losers
    of such a race fail in Delta with a protocol conflict, "non-empty location", or "table not found";
    one round in ten or twenty lands on the second, measured.)"""
    from recsys_spark.datasets.warehouse import REJECTS_SCHEMA, create_if_missing, table_version

    for attempt in range(20):
        path, results, errors = str(tmp_path / f"table-{attempt}"), [], []
        start = threading.Barrier(3)

        def create():
            session = spark.newSession()
            start.wait()
            try:
                results.append(create_if_missing(session, path, REJECTS_SCHEMA))
            except Exception as e:  # collected: an assertion in a thread would not fail the test
                errors.append(e)

        threads = [threading.Thread(target=create) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"round {attempt}: {[str(e)[:300] for e in errors]}"
        # Which of them reports the creation is not asserted: a False only makes its caller check the schema.
        assert len(results) == 3 and table_version(spark, path) == 0
