"""The pipeline end to end on the synthetic e-commerce group: every step, a failing step, a safe re-run."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from delta.tables import DeltaTable

from conftest import REPO
from recsys_spark.cli import main
from recsys_spark.config import load_config
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.jobruns import job_history
from test_batch import output_lines, output_metrics


def synthetic_group(tmp: Path, users: int = 400) -> Path:
    """configs/synthetic-ecommerce.yaml and freshly generated data under ``tmp`` (its relative paths
    resolve there); lighter training settings so the test stays quick."""
    subprocess.run([sys.executable, str(REPO / "scripts" / "generate_synthetic.py"), "--out",
                    str(tmp / "data" / "synthetic"), "--users", str(users), "--items", "150"], check=True,
                   capture_output=True)
    (tmp / "configs").mkdir(exist_ok=True)
    text = (REPO / "configs" / "synthetic-ecommerce.yaml").read_text()
    text = text.replace("factors: 32, iterations: 10", "factors: 8, iterations: 4")
    path = tmp / "configs" / "synthetic-ecommerce.yaml"
    path.write_text(text)
    return path


def lines(folder: Path) -> list[dict]:
    return output_lines(folder)


@pytest.fixture(scope="module")
def ran(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    path = synthetic_group(tmp)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["pipeline", "run", "--config", str(path), "--samples", "2"])
    return path, tmp, code, printed.getvalue()


def test_the_whole_pipeline_runs_every_step_and_records_it(spark, ran, capsys):
    path, tmp, code, out = ran
    assert code == 0
    assert "weekly-mail" in out and "vs managed service $" in out and "sample recommendations" in out
    step_seconds = [float(line.split()[3]) for line in out.splitlines() if line.split()[:1] == ["import"]]
    total = next(float(line.split()[1]) for line in out.splitlines() if line.startswith("total "))
    assert len(step_seconds) == 3 and max(step_seconds) <= total  # the run's wall time, beside its steps'

    assert main(["jobs", "--config", str(path)]) == 0
    history = capsys.readouterr().out
    assert "batch" in history and "cost $" in history
    config = load_config(path)
    weekly = tmp / "out" / "synthetic-ecommerce" / "weekly-mail"
    related = tmp / "out" / "synthetic-ecommerce" / "related-items"
    assert (weekly / "_SUCCESS").exists() and (related / "_SUCCESS").exists()
    warehouse = Warehouse(spark, config)
    purchases = {(r.USER_ID, r.ITEM_ID) for r in
                 warehouse.read("interactions").where("EVENT_TYPE = 'purchase'").collect()}
    out = lines(weekly)
    assert len(out) == warehouse.read("users").count()  # all_users: every known user, one line each
    for line in out:
        assert not any((line["input"]["userId"], i) in purchases for i in line["output"]["recommendedItems"])
    # The landing folder's new users and next-day events were ingested after the imports.
    landing = tmp / "data" / "synthetic" / "landing"
    fresh = [json.loads(x) for x in (landing / "events" / "events-0001.jsonl").read_text().splitlines()]
    imported = len((tmp / "data" / "synthetic" / "interactions.csv").read_text().splitlines()) - 1
    assert warehouse.read("interactions").count() == imported + len(fresh)
    new_users = {json.loads(x)["userId"] for x in (landing / "users" / "users-0001.jsonl").read_text().splitlines()}
    assert new_users <= {r.USER_ID for r in warehouse.read("users").select("USER_ID").collect()}
    printed = ran[3]
    assert "ingest interactions: " in printed and "no new files" not in printed
    kinds = [(r.kind, r.name, r.status) for r in job_history(warehouse, 50).collect()]
    for expected in [("import", "users"), ("import", "items"), ("import", "interactions"), ("ingest", None),
                     ("train", "for-you"), ("train", "also-viewed"), ("train", "popular"),
                     ("batch", "weekly-mail"), ("batch", "related-items"), ("maintain", "table interactions"),
                     ("maintain", "versions for-you"), ("maintain", "table _jobs")]:
        assert (*expected, "SUCCEEDED") in kinds, expected


def test_a_runs_imports_and_batch_jobs_run_at_once_each_commit_naming_its_own_job(spark, ran):
    path, *_ = ran
    warehouse = Warehouse(spark, load_config(path))
    runs = job_history(warehouse, None).where("status = 'SUCCEEDED'").collect()
    for kind in ("import", "batch"):
        first = {}  # the first pipeline run's job per name
        for r in sorted(runs, key=lambda r: r.started_at):
            if r.kind == kind:
                first.setdefault(r.name, r)
        assert len(first) > 1 and max(r.started_at for r in first.values()) < min(r.ended_at for r in first.values())
    for r in runs:
        if r.kind == "import":  # each table's import commit carries its own job's id, not a sibling's
            commits = DeltaTable.forPath(spark, warehouse.path(r.name)).history().collect()
            assert r.job_id in {c.userMetadata for c in commits}, r.name


def test_rerunning_adds_nothing_twice_and_replaces_outputs(spark, ran):
    path, tmp, _, _ = ran
    config = load_config(path)
    warehouse = Warehouse(spark, config)
    rows = warehouse.read("interactions").count()
    weekly = tmp / "out" / "synthetic-ecommerce" / "weekly-mail"
    before = output_metrics(weekly)["run_id"]
    assert main(["pipeline", "run", "--config", str(path), "--steps", "import,ingest,batch"]) == 0
    assert warehouse.read("interactions").count() == rows  # the landing files are not taken twice
    after = output_metrics(weekly)["run_id"]
    assert after != before and (weekly / "_SUCCESS").exists()
    assert {p.name for p in (weekly / "runs").iterdir()} == {before, after}


def test_a_failing_step_stops_the_run_and_keeps_what_was_committed(spark, tmp_path, capsys):
    path = synthetic_group(tmp_path, users=60)
    text = path.read_text().replace("../data/synthetic/items.csv", "../data/synthetic/missing.csv")
    path.write_text(text)
    assert main(["pipeline", "run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "missing.csv does not exist" in err and "FAILED" in err
    warehouse = Warehouse(spark, load_config(path))
    assert warehouse.read("users").count() == 60
    history = {(r.kind, r.name): r.status for r in job_history(warehouse).collect()}
    assert history[("import", "users")] == "SUCCEEDED" and history[("import", "items")] == "FAILED"
    # The imports run at once: the one beside the failure finishes; nothing of the next steps starts.
    assert history[("import", "interactions")] == "SUCCEEDED"
    assert not any(kind != "import" for kind, _ in history)


def test_unknown_steps_are_a_usage_error(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    shutil.copy(REPO / "configs" / "movielens.yaml", path)
    assert main(["pipeline", "run", "--config", str(path), "--steps", "import,deploy"]) == 2
    assert "unknown step(s) deploy" in capsys.readouterr().err


def test_the_readmes_serving_lines_answer_from_the_demo_warehouse(ran):
    """`recsys-spark serve` (a real process) on the demo config, asked by the README's own Python lines."""
    import re
    import time
    import urllib.request

    from conftest import free_port

    path = ran[0]
    block = re.search(r"```python\n(import boto3\n.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "recsys_spark", "serve", "--config", str(path), "--port",
                               str(port)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1).read()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.2)
        done = subprocess.run([sys.executable, "-c", block.replace("127.0.0.1:8080", f"127.0.0.1:{port}")],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        rows = done.stdout.splitlines()
        assert len(rows) == 5 and all(re.fullmatch(r"i\d+ -?[\d.]+ \{'CATEGORY_L1': '\w+', 'PRICE': '[\d.]+'\}", r)
                                      for r in rows), rows
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_imports_of_one_table_run_in_the_configs_order_beside_the_other_tables(spark, tmp_path):
    """The imports of different tables run at once, those of one table one after another: a FULL import
    then an INCREMENTAL one of the same table must not swap (the FULL would replace what the other added)."""
    from kill_matrix import build_data, interactions_csv
    from recsys_spark.pipeline import _chains, run_pipeline

    folder = build_data(tmp_path / "group")
    (folder / "data" / "drops" / "day-2.csv").write_text(interactions_csv(200, shift=7))
    config = load_config(folder / "config.yaml")
    assert _chains((j.dataset, j.mode) for j in config.imports) == [
        [("users", "FULL")], [("interactions", "FULL"), ("interactions", "INCREMENTAL")]]
    result = run_pipeline(spark, config, steps=("import",))
    assert [s.name for s in result.steps] == ["users", "interactions", "interactions"]
    path = Warehouse(spark, config).path("interactions")
    # The FULL import replaces the table's bulk rows (WRITE), the INCREMENTAL one adds the new (MERGE).
    history = DeltaTable.forPath(spark, path).history().orderBy("version").collect()
    assert [r.operation for r in history] == ["CREATE TABLE", "WRITE", "MERGE"]
    assert Warehouse(spark, config).read("interactions").count() == 400 + 200
