"""Erasure (`delete-users` leaves a user's ID in no file under the root) and `maintain`."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
from datasets_helpers import SCHEMAS, write
from recipe_helpers import as_csv, planted

from recsys_spark.config import load_config
from recsys_spark.datasets.deletion import delete_users
from recsys_spark.datasets.importer import run_imports
from recsys_spark.datasets.ingest import run_ingest
from recsys_spark.datasets.maintenance import _due_purges, run_maintain
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.inference.batch import run_batch
from recsys_spark.jobruns import job_history
from recsys_spark.solutions.store import list_versions
from recsys_spark.solutions.train import train_solution

# An ID no generator, hash or timestamp writes by chance.
SECRET = "zq-ERASE-ME-7f3Kx9Qw"
SMALL = "min_interactions: 50, min_users_with_two: 5"


def files_holding(root: Path, needle: str) -> list[str]:
    """Every file under ``root`` (hidden ones too) whose bytes, decompressed gzip or Parquet values hold
    ``needle``."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            data = path.read_bytes()
            texts = [data]
            if data[:2] == b"\x1f\x8b":
                texts.append(gzip.decompress(data))
            if name.endswith(".parquet"):
                texts.append(str(pq.read_table(path).to_pylist()).encode())
            if any(needle.encode() in t for t in texts):
                found.append(str(path.relative_to(root)))
    return found


def events(parts: int = 1):
    """30 users' 8 events each, one of them the user to erase, in ``parts`` pieces."""
    frame = planted(users=30, items=20, per_user=8)
    frame.loc[frame["USER_ID"] == "a0", "USER_ID"] = SECRET
    return [frame.iloc[i::parts] for i in range(parts)]


def test_delete_users_leaves_the_id_in_no_file_under_the_root(spark, tmp_path, write_config):
    root = tmp_path / "warehouse"
    config = load_config(write_config(
        SCHEMAS.format(root=root)
        + f"""imports:
  - {{dataset: interactions, source: {tmp_path / 'e.csv'}, max_reject_ratio: 0.5}}
  - {{dataset: users, source: {tmp_path / 'u.csv'}, max_reject_ratio: 0.5}}
ingest: {{max_reject_ratio: 0.5}}
solutions:
  - {{name: for-you, recipe: user-personalization, settings: {{factors: 4, iterations: 3, {SMALL}}}}}
batch_jobs:
  - {{name: mail, solution: for-you, input: all_users, output: {root / 'out' / 'mail'}, num_results: 3}}
  - {{name: shipped, solution: for-you, input: all_users, output: {tmp_path / 'shipped'}, num_results: 3}}
"""))
    as_csv(events()[0], tmp_path / "e.csv")
    with open(tmp_path / "e.csv", "a") as f:
        f.write(f"{SECRET},A1,not-a-time,view,\n")  # rejected: kept in _rejects with the raw line
    write(tmp_path / "u.csv", f"USER_ID,GENDER,AGE\n{SECRET},F,30\nb1,M,41\nb9,M,old\n")
    landing = root / "_landing"
    (landing / "events").mkdir(parents=True)
    lines = [json.dumps({"userId": u, "eventType": "view", "sentAt": 1_700_000_500 + n, "itemId": "A2",
                         "eventId": f"late-{n}"}) for n, u in enumerate([SECRET, "b1", SECRET, "b2"])]
    broken = f'{{"userId": "{SECRET}", "eventType": "view"'  # malformed JSON: rejected by ingest
    (landing / "events" / "late.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines + [broken]) + "\n").encode()))
    write(landing / "users" / "new.jsonl", json.dumps({"userId": SECRET, "properties": '{"age": 30}'}) + "\n"
          + json.dumps({"userId": "b7", "properties": '{"age": 22}'}) + "\n")

    run_imports(spark, config)
    # As a table written before IDs were kept out of the statistics: the ingested file's max USER_ID is in
    # the log.
    spark.sql(f"ALTER TABLE delta.`{root / 'interactions'}` UNSET TBLPROPERTIES ('delta.dataSkippingStatsColumns')")
    run_ingest(spark, config)
    assert files_holding(root / "interactions" / "_delta_log", SECRET)
    version = train_solution(spark, config, "for-you", evaluate=False)
    run_batch(spark, config, "mail")
    shutil.copytree(root / "out" / "mail", tmp_path / "shipped")  # a batch output outside the root
    wh = Warehouse(spark, config)
    others = wh.read("interactions").where(f"USER_ID != '{SECRET}'").count()
    factors = spark.read.parquet(f"{version.path}/users").count()
    places = {p.split("/")[0] for p in files_holding(root, SECRET)}
    assert {"interactions", "users", "_rejects", "_landing", "solutions", "out"} <= places, places

    started = time.perf_counter()
    counts = delete_users(spark, config, write(tmp_path / "forget.csv", f"USER_ID\n{SECRET}\n"))
    seconds = time.perf_counter() - started

    assert files_holding(root, SECRET) == []
    assert counts["users_listed"] == 1 and counts["interactions_deleted"] == 8 + 2 and counts["users_deleted"] == 1
    assert counts["rejects_deleted"] == 2 and counts["landing_lines_deleted"] == 4  # 2 events, the broken one, a user
    assert counts["version_rows_deleted"] == 1 and counts["batch_lines_deleted"] == 1
    assert counts["purged_files_removed"] > 0 and counts["purged_log_files_removed"] > 0
    # Everyone else stays, and the rewritten landing files are not taken again.
    assert wh.read("interactions").count() == others
    assert {r.USER_ID for r in wh.read("users").collect()} == {"b1", "b7"}
    run_ingest(spark, config)
    assert wh.read("interactions").count() == others
    late = gzip.decompress((landing / "events" / "late.jsonl.gz").read_bytes()).decode().splitlines()
    assert [json.loads(x)["userId"] for x in late] == ["b1", "b2"]
    assert list_versions(spark, config, "for-you")[0].version == version.version
    assert spark.read.parquet(f"{version.path}/users").count() == factors - 1
    # The job record: what was erased where, and what was only found.
    record = job_history(wh, 50).where("kind = 'delete-users'").first()
    assert record.status == "SUCCEEDED"
    metrics = json.loads(record.metrics)
    assert str(tmp_path / "shipped") in metrics["not_erased"] and "purged_at" in metrics
    assert {f"{root}/interactions", f"{root}/_rejects/interactions", f"{version.path}/users",
            str(root / "out" / "mail")} <= set(metrics["erased"])
    assert files_holding(tmp_path / "shipped", SECRET)  # listed, left as it was
    print(f"delete-users took {seconds:.1f} s")


def test_maintain_compacts_vacuums_prunes_and_finishes_a_delayed_erasure(spark, tmp_path, write_config):
    root = tmp_path / "warehouse"
    text = SCHEMAS.format(root=root) + f"""solutions:
  - {{name: popular, recipe: popularity-count, settings: {{{SMALL}}}}}
erasure: {{purge_after_hours: 0.0005}}
maintain: {{vacuum_retention_hours: 0, keep_versions: 1}}
"""
    path = write_config(text)
    config = load_config(path)
    wh = Warehouse(spark, config)
    for n, part in enumerate(events(3)):  # three small commits: files to compact; three versions to prune
        source = as_csv(part, tmp_path / f"e{n}.csv")
        run_imports(spark, config, "interactions", source, "INCREMENTAL")
        train_solution(spark, config, "popular", evaluate=False)
    oldest = list_versions(spark, config, "popular")[0].version
    config = load_config(write_config(text + f"campaigns: [{{name: c, solution: popular, version: {oldest}}}]\n"))
    delete_users(spark, config, write(tmp_path / "forget.csv", f"USER_ID\n{SECRET}\n"))
    assert files_holding(root / "interactions", SECRET)  # the old files and log keep it until the purge is due
    time.sleep(2.5)  # the purge is due 1.8 s after the deletion

    started = time.perf_counter()
    result = run_maintain(spark, config)
    seconds = time.perf_counter() - started

    assert files_holding(root, SECRET) == []
    actions = dict(result.actions)
    assert actions["table interactions"]["files_compacted"] >= 2
    assert actions["table interactions"]["files_after"] < actions["table interactions"]["files_before"]
    assert result.bytes_freed > 0
    kept = {v.version for v in list_versions(spark, config, "popular")}
    assert len(kept) == 2 and oldest in kept  # the newest and the campaign's pin
    assert actions["versions popular"]["versions_removed"] == 1
    history = {(r.kind, r.name): r for r in job_history(wh, 50).collect()}
    purge = [r for (kind, name), r in history.items() if kind == "maintain" and name.startswith("purge ")]
    assert len(purge) == 1 and purge[0].counts["purged_files_removed"] > 0
    assert history[("maintain", "table interactions")].counts["bytes_freed"] > 0
    assert wh.read("interactions").count() == 30 * 8 - 8
    assert _due_purges(wh) == []  # the next run finds it done
    print(f"maintain took {seconds:.1f} s: {result.summary()}")
