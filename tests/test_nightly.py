"""Nightly runs: three `pipeline run`s over a folder of daily drops (files written by Python's csv module),
the import ledger (only new files, committed with the data, a changed file, a run killed between the ledger
and the data commit), the retrain policy, and the run lock per root (local and S3)."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import REPO
from datasets_helpers import SCHEMAS
from recsys_spark.cli import main
from recsys_spark.config import S3Settings, load_config
from recsys_spark.datasets import ledger
from recsys_spark.datasets.importer import run_imports
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.errors import BUSY_EXIT_CODE, RootBusyError
from recsys_spark.solutions.retrain import retrain_due
from recsys_spark.solutions.store import list_versions
from test_batch import output_metrics

DATASETS = ("interactions", "items")
NIGHTLY = SCHEMAS + """
imports:
  - {{dataset: items, source: {drops}/items, mode: INCREMENTAL, only_new_files: true}}
  - {{dataset: interactions, source: {drops}/interactions, mode: INCREMENTAL, only_new_files: true}}
solutions:
  - {{name: popular, recipe: popularity-count, settings: {{min_interactions: 1, min_users_with_two: 1}}}}
batch_jobs:
  - {{name: nightly, solution: popular, input: all_users, output: {out}, num_results: 5}}
spark:
  master: local[2]
"""


def drop_day(drops: Path, day: int, rows: int = 300) -> Path:
    """One day's interactions file, as Python's csv module writes it (CRLF line ends, quotes where needed)."""
    rng = random.Random(day)
    path = drops / "interactions" / f"2026-11-{day:02d}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"])
        for n in range(rows):
            out.writerow([f"u{rng.randrange(60)}", f"i{rng.randrange(40)}", 1_764_460_800 + day * 86_400 + n,
                          rng.choice(["click", "buy"]), ""])
    return path


def group(tmp: Path, days: tuple[int, ...] = (28, 29)) -> Path:
    drops = tmp / "drops"
    for day in days:
        drop_day(drops, day)
    (drops / "items").mkdir(parents=True)
    with (drops / "items" / "catalog.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["ITEM_ID", "GENRES", "PRICE"])
        out.writerows([f"i{n}", "Comedy|Drama" if n % 2 else "Action", n + 0.5] for n in range(40))
    path = tmp / "config.yaml"
    path.write_text(NIGHTLY.format(root=tmp / "warehouse", drops=drops, out=tmp / "out"))
    return path


def rows(spark, config, dataset: str) -> list[tuple]:
    return sorted(tuple(r) for r in Warehouse(spark, config).read(dataset).collect())


def test_three_nights_import_only_new_files_and_retrain_only_on_new_data(spark, tmp_path):
    path = group(tmp_path)
    config = load_config(path)
    warehouse = Warehouse(spark, config)
    night = ["pipeline", "run", "--config", str(path), "--steps", "import,train,batch"]

    assert main(night) == 0  # night 1: both days' files and the catalog
    assert len(list_versions(spark, config, "popular")) == 1
    versions, first_run = warehouse.versions(), output_metrics(tmp_path / "out")["run_id"]

    assert main([*night[:-1], "import,train,batch,maintain"]) == 0  # night 2: no new file (maintain: tidy only)
    assert warehouse.versions() == versions  # no commit to any dataset table
    assert len(list_versions(spark, config, "popular")) == 1  # no new solution version
    assert output_metrics(tmp_path / "out")["run_id"] != first_run  # the batch output is written again
    history = spark.read.format("delta").load(warehouse.jobs_path).orderBy("started_at").collect()
    train = [r for r in history if r.kind == "train"]
    assert [r.status for r in train] == ["SUCCEEDED", "SKIPPED"]
    assert json.loads(train[-1].metrics)["skipped"].startswith("no dataset table changed since version")
    imports = [r for r in history if r.kind == "import" and r.name == "interactions"]
    assert imports[-1].counts["files_new"] == 0 and imports[-1].counts["files_listed"] == 2

    new_day = drop_day(tmp_path / "drops", 30)  # night 3: one new day
    assert main(night) == 0
    history = spark.read.format("delta").load(warehouse.jobs_path).orderBy("started_at").collect()
    last_import = [r for r in history if r.kind == "import" and r.name == "interactions"][-1]
    assert last_import.counts["files_new"] == 1 and last_import.counts["read"] == 300
    assert [r.status for r in history if r.kind == "train"][-1] == "SUCCEEDED"
    assert len(list_versions(spark, config, "popular")) == 2

    # The tables equal one import of every file.
    once = load_config(group(tmp_path / "once", days=(28, 29, 30)))
    run_imports(spark, once)
    for dataset in DATASETS:
        assert rows(spark, config, dataset) == rows(spark, once, dataset), dataset
    assert new_day.name in {Path(p).name for p in ledger.imported(warehouse, "interactions")}


def test_a_changed_file_is_read_again_and_adds_only_its_new_rows(spark, tmp_path):
    config = load_config(group(tmp_path))
    run_imports(spark, config, dataset="interactions")
    before = rows(spark, config, "interactions")
    day = tmp_path / "drops" / "interactions" / "2026-11-29.csv"
    with day.open("a", newline="") as f:  # a late line appended to yesterday's file
        csv.writer(f).writerow(["u1", "i1", 1_800_000_000, "buy", ""])
    [result] = run_imports(spark, config, dataset="interactions")
    assert (result.new_files, result.read, result.inserted) == (1, 301, 1)
    assert len(rows(spark, config, "interactions")) == len(before) + 1
    [again] = run_imports(spark, config, dataset="interactions")
    assert (again.new_files, again.read, again.version) == (0, 0, result.version)  # nothing read, nothing committed


def test_ledger_rows_of_a_run_killed_before_its_data_commit_do_not_count(spark, tmp_path):
    config = load_config(group(tmp_path, days=(28,)))
    warehouse = Warehouse(spark, config)
    run_imports(spark, config, dataset="interactions")
    day = drop_day(tmp_path / "drops", 29)
    # What a run killed after its ledger write and before its commit leaves: rows numbered past the table's.
    listed = {str(day): (day.stat().st_size, int(day.stat().st_mtime * 1000))}
    seq = ledger.record(warehouse, "interactions", listed, "import-killed")
    assert seq == ledger.committed_seq(spark, warehouse.path("interactions")) + 1
    assert ledger.new_files(warehouse, "interactions", {**listed}) == [str(day)]
    [result] = run_imports(spark, config, dataset="interactions")
    assert result.new_files == 1 and result.inserted == 300
    assert ledger.committed_seq(spark, warehouse.path("interactions")) == seq  # the same number, now committed
    stored = spark.read.format("delta").load(ledger.ledger_path(warehouse, "interactions")).collect()
    assert sorted(r.job_id != "import-killed" for r in stored) == [True, True]  # the killed run's row is gone


def test_only_new_files_needs_incremental(tmp_path):
    from recsys_spark.errors import ConfigError

    path = group(tmp_path)
    path.write_text(path.read_text().replace("mode: INCREMENTAL, only_new_files", "mode: FULL, only_new_files"))
    with pytest.raises(ConfigError, match="only_new_files needs mode: INCREMENTAL"):
        load_config(path)


def test_retrain_policy_thresholds(spark, tmp_path):
    path = group(tmp_path, days=(28,))
    text = path.read_text()
    config = load_config(path)
    run_imports(spark, config)
    assert retrain_due(spark, config, "popular") == (True, "no version yet")
    assert main(["train", "--config", str(path), "--no-evaluate"]) == 0
    assert retrain_due(spark, config, "popular")[0] is False
    drop_day(tmp_path / "drops", 29, rows=30)  # 10% more interactions
    run_imports(spark, config, dataset="interactions")
    assert retrain_due(spark, config, "popular")[0] is True  # when: changed
    path.write_text(text.replace("min_users_with_two: 1}}", "min_users_with_two: 1}, "
                                 "retrain: {new_interactions_fraction: 0.2, max_age_days: 7}}"))
    due, why = retrain_due(spark, load_config(path), "popular")
    assert not due and "changed by 10.0% (< 20.0%)" in why and "days old (< 7)" in why
    path.write_text(text.replace("min_users_with_two: 1}}", "min_users_with_two: 1}, "
                                 "retrain: {new_interactions_fraction: 0.05}}"))
    assert retrain_due(spark, load_config(path), "popular")[0] is True
    path.write_text(text.replace("min_users_with_two: 1}}", "min_users_with_two: 2}}"))  # settings changed
    newest = list_versions(spark, config, "popular")[-1].version
    assert retrain_due(spark, load_config(path), "popular") == (
        True, f"the recipe, settings or events differ from version {newest}'s")


HOLDER = """
import sys, time, types
from recsys_spark import writerlock
from recsys_spark.config import S3Settings
writerlock.TTL_SECONDS = {ttl}
s3 = S3Settings(endpoint={endpoint!r}, region="us-east-1", path_style_access=True)
with writerlock.pipeline_turn(types.SimpleNamespace(root={root!r}, s3=s3), "pipeline-other", 0):
    print("held", flush=True)
    time.sleep(120)
"""


def holder(root: str, endpoint: str | None = None, ttl: float = 120.0) -> subprocess.Popen:
    """Another process holding the root's pipeline turn (until killed)."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER.format(root=root, endpoint=endpoint,
                                                                                 ttl=ttl))],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_an_overlapping_run_exits_75_naming_the_holder_and_a_killed_holder_leaves_no_lock(spark, tmp_path, capsys):
    path = group(tmp_path)
    other = holder(str(tmp_path / "warehouse"))
    try:
        assert main(["pipeline", "run", "--config", str(path), "--steps", "import"]) == BUSY_EXIT_CODE
        err = capsys.readouterr().err
        assert f"pipeline run pipeline-other (host {os.uname().nodename}, process {other.pid}) is still running" in err
        assert not (tmp_path / "warehouse" / "interactions").exists()  # nothing written
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
    # The system let go of the killed process's lock: the next run goes ahead.
    assert main(["pipeline", "run", "--config", str(path), "--steps", "import"]) == 0


@pytest.mark.s3
def test_the_run_lock_on_s3_without_a_lock_table_uses_conditional_writes(s3_endpoint, s3_client):
    from recsys_spark.writerlock import pipeline_turn

    s3_client.create_bucket(Bucket="nightly-lock")
    root = "s3://nightly-lock/wh"
    config = SimpleNamespace(root=root, s3=S3Settings(endpoint=s3_endpoint, region="us-east-1",
                                                      path_style_access=True))
    other = holder(root, s3_endpoint, ttl=4.0)
    try:
        with pytest.raises(RootBusyError, match="pipeline run pipeline-other .* is still running"):
            with pipeline_turn(config, "pipeline-mine", 0):
                pass
        held = json.loads(s3_client.get_object(Bucket="nightly-lock", Key="wh/_locks/pipeline.json")["Body"].read())
        assert held["job_id"] == "pipeline-other"
        other.send_signal(signal.SIGSTOP)  # frozen: it stops renewing; after its TTL the turn is taken over
        started = time.monotonic()
        with pipeline_turn(config, "pipeline-mine", 0.5):
            held = json.loads(s3_client.get_object(Bucket="nightly-lock", Key="wh/_locks/pipeline.json")["Body"]
                              .read())
            assert held["job_id"] == "pipeline-mine" and time.monotonic() - started < 20
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
    # Given back: the object is gone.
    assert "Contents" not in s3_client.list_objects_v2(Bucket="nightly-lock", Prefix="wh/_locks/")
